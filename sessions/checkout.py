"""Stripe Checkout Sessions for bookings (one per attempt).

The booking row is the intent: ``checkout:<booking id>:<attempt>`` is the
idempotency key, and every parameter is derived from the booking (the
expiry is its ``hold_expires_at``, fixed when the seat was taken), so a
replay sends exactly the first request and Stripe answers with the same
Checkout Session.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.settings import Settings
from core.stripe_gateway import StripeGateway, idempotency_key
from core.stripe_types import CheckoutSession
from sessions.models import Booking, CoachingSession

# Stripe wants expires_at at least 30 minutes after creation, measured on its
# own clock when the request arrives: a little slack keeps us clear of it.
EXPIRY_SLACK = timedelta(seconds=90)


def transfer_group(booking_id: int) -> str:
    return f"booking_{booking_id}"


def checkout_metadata(booking: Booking) -> dict[str, str]:
    return {
        "booking_id": str(booking.id),
        "coaching_session_id": str(booking.coaching_session_id),
        "coach_id": str(booking.coach_id),
        "mentee_id": str(booking.mentee_id),
        # Lets a failure of an older attempt be told apart from the current one.
        "attempt": str(booking.attempt),
    }


def checkout_expiry(now: datetime, settings: Settings) -> datetime:
    """When a Checkout Session asked for now expires: the seat is held until then."""
    return (now + timedelta(minutes=settings.checkout_expiry_minutes) + EXPIRY_SLACK).replace(
        microsecond=0
    )


def checkout_key(booking: Booking) -> str:
    return idempotency_key("checkout", booking.id, booking.attempt)


async def create_checkout(
    booking: Booking,
    session: CoachingSession,
    *,
    gateway: StripeGateway,
    settings: Settings,
    customer: str | None,
) -> CheckoutSession:
    """This attempt's Checkout Session at Stripe (made, or replayed by the same key)."""
    assert booking.hold_expires_at is not None
    base = settings.public_url.rstrip("/")
    return await gateway.create_checkout_session(
        amount=booking.amount,
        currency=booking.currency,
        product_name=session.title,
        success_url=f"{base}/bookings/{booking.id}?checkout=success",
        cancel_url=f"{base}/bookings/{booking.id}?checkout=cancelled",
        expires_at=int(booking.hold_expires_at.timestamp()),
        metadata=checkout_metadata(booking),
        transfer_group=transfer_group(booking.id),
        customer=customer,
        client_reference_id=str(booking.id),
        idempotency_key=checkout_key(booking),
    )


def record_checkout(booking: Booking, cs: CheckoutSession) -> None:
    booking.checkout_session_id = cs.id
    booking.checkout_url = cs.url
    if cs.expires_at and booking.hold_expires_at is not None:
        booking.hold_expires_at = datetime.fromtimestamp(
            cs.expires_at, booking.hold_expires_at.tzinfo
        )
