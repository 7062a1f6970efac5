"""Changing a booking before it is paid: cancel it, or retry a failed payment.

Both follow the rule of sessions/booking.py: Stripe is called with no row
lock held (the old Checkout Session expired first, the new attempt committed
as the intent before it is opened), and the booking is locked and re-checked
after.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.settings import Settings
from core.stripe_errors import StripeAuthenticationError, StripeIdempotencyError, StripeRefused
from core.stripe_gateway import StripeGateway, idempotency_key
from sessions.audit import Actor, transition
from sessions.booking import (
    check_bookable,
    check_seat,
    get_booking,
    give_up_seat,
    open_checkout,
    waits_for_checkout,
)
from sessions.catalog import lock_session
from sessions.checkout import checkout_expiry
from sessions.customers import ensure_customer
from sessions.errors import BookingStateConflict, NotYourBooking
from sessions.models import Booking, BookingStatus


def _owned(booking: Booking, actor: Actor) -> None:
    if actor.role == "admin":
        return
    if actor.user_id != booking.mentee_id:
        raise NotYourBooking("this booking belongs to someone else")


async def expire_checkout(gateway: StripeGateway, booking: Booking) -> str | None:
    """Expire the booking's open Checkout Session; returns Stripe's status of it.

    The key is the booking's attempt, so a repeat replays. Call it with no row lock held.
    """
    if booking.checkout_session_id is None:
        return None
    try:
        cs = await gateway.expire_checkout_session(
            booking.checkout_session_id,
            idempotency_key=idempotency_key("checkout-expire", booking.id, booking.attempt),
        )
        return cs.status
    except StripeRefused:
        # Not open any more: it expired or completed; ask which.
        cs = await gateway.retrieve_checkout_session(booking.checkout_session_id)
        return "paid" if cs.payment_status == "paid" else cs.status


async def cancel_booking(
    db: AsyncSession, *, booking_id: int, actor: Actor, gateway: StripeGateway, clock: Clock
) -> Booking:
    """Cancel before payment (PENDING or FAILED); the seat is freed at once.

    The Checkout Session is expired first, no lock held, then the booking is
    locked and re-checked: a payment or a retry that came in between wins.
    """
    peek = await get_booking(db, booking_id)
    _owned(peek, actor)
    if peek.status not in (BookingStatus.PENDING, BookingStatus.FAILED):
        raise BookingStateConflict(f"a {peek.status} booking cannot be cancelled")
    await db.commit()
    if await expire_checkout(gateway, peek) == "paid":
        raise BookingStateConflict("this booking has just been paid; ask for a refund instead")
    booking = await get_booking(db, booking_id, lock=True)
    if booking.status not in (BookingStatus.PENDING, BookingStatus.FAILED):
        raise BookingStateConflict(f"a {booking.status} booking cannot be cancelled")
    if (booking.attempt, booking.checkout_session_id) != (peek.attempt, peek.checkout_session_id):
        raise BookingStateConflict("this booking was retried meanwhile; cancel it again")
    await transition(
        db,
        booking,
        BookingStatus.CANCELLED.value,
        actor=actor,
        cause="cancelled_by_user",
        at=clock.now(),
    )
    return booking


async def retry_booking(
    db: AsyncSession,
    *,
    booking_id: int,
    actor: Actor,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
) -> Booking:
    """After a failed payment: a new Checkout Session, back to PENDING (seat re-checked).

    The old attempt's Checkout Session is expired (no lock), the new attempt
    is committed as the intent (session and booking locked briefly), then
    opened at Stripe. Retrying a retry whose answer was lost replays it.
    """
    now = clock.now()
    peek = await get_booking(db, booking_id)
    _owned(peek, actor)
    if not (peek.status == BookingStatus.FAILED or waits_for_checkout(peek)):
        raise BookingStateConflict(f"only a failed booking can be retried (it is {peek.status})")
    customer = await ensure_customer(db, user_id=peek.mentee_id, gateway=gateway)
    await db.commit()
    if peek.status == BookingStatus.FAILED and await expire_checkout(gateway, peek) == "paid":
        raise BookingStateConflict("the previous attempt has just been paid")
    session = await lock_session(db, peek.coaching_session_id)
    booking = await get_booking(db, booking_id, lock=True)
    if booking.attempt != peek.attempt:
        raise BookingStateConflict("this booking was retried meanwhile")
    if booking.status == BookingStatus.FAILED:
        check_bookable(session, booking.mentee_id, now)
        await check_seat(db, session, now, exclude=booking.id)
        booking.attempt += 1
        booking.checkout_session_id = None
        booking.checkout_url = None
        booking.hold_expires_at = checkout_expiry(now, settings)
        await transition(
            db, booking, BookingStatus.PENDING.value, actor=actor, cause="retry", at=now,
            detail={"attempt": booking.attempt},
        )  # fmt: skip
    elif not waits_for_checkout(booking):
        raise BookingStateConflict(f"only a failed booking can be retried (it is {booking.status})")
    await db.commit()
    try:
        return await open_checkout(
            db, booking, gateway=gateway, settings=settings, customer=customer, now=now
        )
    except StripeRefused as exc:
        if not isinstance(exc, StripeIdempotencyError | StripeAuthenticationError):
            await give_up_seat(db, booking, now=now, error=exc, to=BookingStatus.FAILED)
            await db.commit()
        raise
