"""Stripe Checkout Sessions for bookings (one per attempt)."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.settings import Settings
from core.stripe_gateway import StripeGateway, idempotency_key
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


async def start_checkout(
    booking: Booking,
    session: CoachingSession,
    *,
    gateway: StripeGateway,
    settings: Settings,
    now: datetime,
    customer_email: str | None = None,
) -> None:
    """Create this attempt's Checkout Session and hold the seat until it expires."""
    expires = now + timedelta(minutes=settings.checkout_expiry_minutes) + EXPIRY_SLACK
    base = settings.public_url.rstrip("/")
    cs = await gateway.create_checkout_session(
        amount=booking.amount,
        currency=booking.currency,
        product_name=session.title,
        success_url=f"{base}/bookings/{booking.id}?checkout=success",
        cancel_url=f"{base}/bookings/{booking.id}?checkout=cancelled",
        expires_at=int(expires.timestamp()),
        metadata=checkout_metadata(booking),
        transfer_group=transfer_group(booking.id),
        customer_email=customer_email,
        client_reference_id=str(booking.id),
        idempotency_key=idempotency_key("checkout", booking.id, booking.attempt),
    )
    booking.checkout_session_id = cs.id
    booking.checkout_url = cs.url
    booking.hold_expires_at = datetime.fromtimestamp(
        cs.expires_at or expires.timestamp(), now.tzinfo
    )
