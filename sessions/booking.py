"""Booking a seat: the seat (the intent), then its Checkout Session, no lock held across Stripe.

A booking that calls Stripe runs in three steps (the payouts' pattern):

1. the intent, in a short transaction under the row locks that decide it
   (the session's for a seat): a PENDING booking whose hold ends when its
   Checkout Session will expire, ``checkout_session_id`` still empty;
   committed. Its Checkout Session's key is ``checkout:<booking>:<attempt>``.
2. the Stripe call, no lock held: a slow Stripe delays this request only,
   never the other bookings of the session.
3. the outcome, under the booking's lock only, re-checking that the booking
   still waits for it.

A retry after an unknown outcome (or a lost answer) finds the booking still
waiting for its Checkout Session and replays step 2 with the same key:
one Checkout Session, one seat.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import CoachProfile
from core.clock import Clock
from core.settings import Settings
from core.stripe_errors import StripeAuthenticationError, StripeIdempotencyError, StripeRefused
from core.stripe_gateway import StripeGateway, idempotency_key
from sessions.audit import Actor, created, transition
from sessions.catalog import count_seats, lock_session
from sessions.checkout import checkout_expiry, create_checkout, record_checkout
from sessions.customers import ensure_customer
from sessions.errors import (
    AlreadyBooked,
    BookingNotFound,
    BookingStateConflict,
    SessionFull,
    SessionNotBookable,
    SessionNotFound,
)
from sessions.models import ACTIVE_STATUSES, Booking, BookingStatus, CoachingSession, SessionStatus

log = logging.getLogger(__name__)


def check_bookable(session: CoachingSession, mentee_id: int, now: datetime) -> None:
    if session.status != SessionStatus.PUBLISHED.value:
        raise SessionNotBookable("this session was cancelled")
    if session.starts_at <= now:
        raise SessionNotBookable("this session has already started")
    if session.coach_id == mentee_id:
        raise SessionNotBookable("a coach cannot book their own session")


async def check_seat(
    db: AsyncSession, session: CoachingSession, now: datetime, exclude: int | None = None
) -> None:
    if session.capacity is None:
        return
    if await count_seats(db, session.id, now=now, exclude_booking=exclude) >= session.capacity:
        raise SessionFull("no seat left in this session")


async def get_booking(db: AsyncSession, booking_id: int, *, lock: bool = False) -> Booking:
    stmt = select(Booking).where(Booking.id == booking_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = (await db.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise BookingNotFound(f"booking {booking_id} does not exist")
    return row


def waits_for_checkout(booking: Booking) -> bool:
    """An open intent: PENDING, its Checkout Session asked for but not recorded yet."""
    return booking.status == BookingStatus.PENDING and booking.checkout_session_id is None


async def _take_seat(
    db: AsyncSession, *, session_id: int, mentee_id: int, now: datetime, settings: Settings
) -> tuple[Booking, bool]:
    """Step 1 of ``book``: a new PENDING booking holding a seat, or the mentee's booking
    still waiting for its Checkout Session (a retry). Under the session's row lock, so
    concurrent bookings of the last seat queue up here (not behind Stripe) and one wins."""
    session = await lock_session(db, session_id)
    check_bookable(session, mentee_id, now)
    existing = (
        await db.execute(
            select(Booking).where(
                Booking.coaching_session_id == session_id,
                Booking.mentee_id == mentee_id,
                Booking.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        held = existing.hold_expires_at is not None and existing.hold_expires_at > now
        if existing.status == BookingStatus.PENDING and not held:
            # Its checkout has expired but Stripe's event has not come yet; a
            # payment arriving for it later is refunded automatically.
            await transition(
                db,
                existing,
                BookingStatus.CANCELLED.value,
                actor=Actor.system(),
                cause="checkout_hold_expired",
                at=now,
            )
        elif waits_for_checkout(existing):
            return existing, False
        else:
            raise AlreadyBooked(f"you already have booking {existing.id} for this session")
    await check_seat(db, session, now)
    profile = await db.get(CoachProfile, session.coach_id)
    booking = Booking(
        coaching_session_id=session.id,
        mentee_id=mentee_id,
        coach_id=session.coach_id,
        status=BookingStatus.PENDING.value,
        amount=session.price,
        currency=session.currency,
        fee_bps=profile.fee_bps if profile is not None else settings.platform_fee_bps,
        attempt=1,
        hold_expires_at=checkout_expiry(now, settings),
        amount_refunded=0,
        created_at=now,
        updated_at=now,
    )
    db.add(booking)
    await db.flush()
    await created(db, booking, actor=Actor.user(mentee_id, "mentee"), cause="booked", at=now)
    return booking, True


async def book(
    db: AsyncSession,
    *,
    session_id: int,
    mentee_id: int,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
) -> Booking:
    """A PENDING booking holding a seat, with its Checkout Session (``checkout_url``).

    Commits the seat (step 1) before calling Stripe; the caller commits the
    outcome. Stripe's outcome unknown: the seat stays held until the hold
    ends, and the same request again replays the same Checkout Session.
    """
    now = clock.now()
    # Checked before a Customer is made for a booking that cannot be; again under the lock.
    peek = await db.get(CoachingSession, session_id)
    if peek is None:
        raise SessionNotFound(f"coaching session {session_id} does not exist")
    check_bookable(peek, mentee_id, now)
    customer = await ensure_customer(db, user_id=mentee_id, gateway=gateway)
    for last_try in (False, True):
        booking, fresh = await _take_seat(
            db, session_id=session_id, mentee_id=mentee_id, now=now, settings=settings
        )
        await db.commit()
        try:
            return await open_checkout(
                db, booking, gateway=gateway, settings=settings, customer=customer, now=now
            )
        except StripeRefused as exc:
            if isinstance(exc, StripeIdempotencyError | StripeAuthenticationError):
                raise  # says nothing of whether the first request made a session: keep the seat
            # Refused, so this key made no Checkout Session: the seat goes back. A replay
            # refused (its hold too short for Stripe by now) is booked afresh, once.
            await give_up_seat(db, booking, now=now, error=exc)
            await db.commit()
            if last_try or fresh:
                raise
    raise AssertionError("unreachable")


async def give_up_seat(
    db: AsyncSession,
    booking: Booking,
    *,
    now: datetime,
    error: StripeRefused,
    to: BookingStatus = BookingStatus.CANCELLED,
) -> None:
    """Stripe refused this attempt's Checkout Session: the booking stops waiting for it
    (a new booking is cancelled, a retry goes back to FAILED)."""
    locked = await get_booking(db, booking.id, lock=True)
    if waits_for_checkout(locked) and locked.attempt == booking.attempt:
        await transition(
            db, locked, to.value, actor=Actor.system(), cause="checkout_refused", at=now,
            detail={"error": error.message[:500], "attempt": booking.attempt},
        )  # fmt: skip


async def open_checkout(
    db: AsyncSession,
    booking: Booking,
    *,
    gateway: StripeGateway,
    settings: Settings,
    customer: str | None,
    now: datetime,
) -> Booking:
    """Steps 2 and 3: the Checkout Session at Stripe (no lock held), then on the booking."""
    session = await db.get(CoachingSession, booking.coaching_session_id)
    assert session is not None
    attempt = booking.attempt
    # No transaction open across the call: the read above ends with the commit below.
    await db.commit()
    cs = await create_checkout(
        booking, session, gateway=gateway, settings=settings, customer=customer
    )
    locked = await get_booking(db, booking.id, lock=True)
    if locked.checkout_session_id == cs.id:
        return locked  # a concurrent replay recorded it
    if waits_for_checkout(locked) and locked.attempt == attempt:
        record_checkout(locked, cs)
        await db.flush()
        return locked
    # Cancelled (or retried) while Stripe worked: this session is for nothing. Closed
    # at Stripe, lock released first; a payment that still lands is refunded.
    await db.rollback()
    try:
        await gateway.expire_checkout_session(
            cs.id, idempotency_key=idempotency_key("checkout-expire", booking.id, attempt)
        )
    except Exception:  # best effort: the automatic refund covers a payment anyway
        log.warning("could not expire checkout %s of booking %s", cs.id, booking.id)
    raise BookingStateConflict(f"booking {booking.id} changed while its checkout was opened")
