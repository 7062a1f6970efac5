"""Bookings: create (seat held under the session row lock), cancel, retry, list."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import CoachProfile
from core.clock import Clock
from core.settings import Settings
from core.stripe_errors import StripeRefused
from core.stripe_gateway import StripeGateway, idempotency_key
from sessions.audit import Actor, created, transition
from sessions.catalog import count_seats, lock_session, seats_taken_filter
from sessions.checkout import start_checkout
from sessions.errors import (
    AlreadyBooked,
    BookingNotFound,
    BookingStateConflict,
    NotYourBooking,
    SessionFull,
    SessionNotBookable,
)
from sessions.models import (
    ACTIVE_STATUSES,
    Booking,
    BookingStatus,
    CoachingSession,
    SessionStatus,
)

log = logging.getLogger(__name__)


def _check_bookable(session: CoachingSession, now: datetime) -> None:
    if session.status != SessionStatus.PUBLISHED.value:
        raise SessionNotBookable("this session was cancelled")
    if session.starts_at <= now:
        raise SessionNotBookable("this session has already started")


async def _check_seat(
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


async def book(
    db: AsyncSession,
    *,
    session_id: int,
    mentee_id: int,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    customer_email: str | None = None,
) -> Booking:
    """A PENDING booking holding a seat, with its Checkout Session (``checkout_url``).

    Everything happens under the session's row lock, the Stripe call
    included, so concurrent bookings of the last seat queue up and exactly
    one wins. If Stripe fails, the caller rolls back and nothing is written.
    """
    now = clock.now()
    session = await lock_session(db, session_id)
    _check_bookable(session, now)
    if session.coach_id == mentee_id:
        raise SessionNotBookable("a coach cannot book their own session")
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
        if existing.status == BookingStatus.PENDING and (
            existing.hold_expires_at is None or existing.hold_expires_at <= now
        ):
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
        else:
            raise AlreadyBooked(f"you already have booking {existing.id} for this session")
    await _check_seat(db, session, now)
    profile = await db.get(CoachProfile, session.coach_id)
    fee_bps = profile.fee_bps if profile is not None else settings.platform_fee_bps
    booking = Booking(
        coaching_session_id=session.id,
        mentee_id=mentee_id,
        coach_id=session.coach_id,
        status=BookingStatus.PENDING.value,
        amount=session.price,
        currency=session.currency,
        fee_bps=fee_bps,
        attempt=1,
        amount_refunded=0,
        created_at=now,
        updated_at=now,
    )
    db.add(booking)
    await db.flush()
    await created(db, booking, actor=Actor.user(mentee_id, "mentee"), cause="booked", at=now)
    await start_checkout(
        booking,
        session,
        gateway=gateway,
        settings=settings,
        now=now,
        customer_email=customer_email,
    )
    await db.flush()
    return booking


def _owned(booking: Booking, actor: Actor) -> None:
    if actor.role == "admin":
        return
    if actor.user_id != booking.mentee_id:
        raise NotYourBooking("this booking belongs to someone else")


async def expire_checkout(gateway: StripeGateway, booking: Booking) -> str | None:
    """Expire the booking's open Checkout Session; returns Stripe's status of it."""
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
    """Cancel before payment (PENDING or FAILED); the seat is freed at once."""
    booking = await get_booking(db, booking_id, lock=True)
    _owned(booking, actor)
    if booking.status not in (BookingStatus.PENDING, BookingStatus.FAILED):
        raise BookingStateConflict(f"a {booking.status} booking cannot be cancelled")
    if await expire_checkout(gateway, booking) == "paid":
        raise BookingStateConflict("this booking has just been paid; ask for a refund instead")
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
    """After a failed payment: a new Checkout Session, back to PENDING (seat re-checked)."""
    now = clock.now()
    peek = await get_booking(db, booking_id)
    _owned(peek, actor)
    session = await lock_session(db, peek.coaching_session_id)
    booking = await get_booking(db, booking_id, lock=True)
    if booking.status != BookingStatus.FAILED:
        raise BookingStateConflict(f"only a failed booking can be retried (it is {booking.status})")
    _check_bookable(session, now)
    await _check_seat(db, session, now, exclude=booking.id)
    if await expire_checkout(gateway, booking) == "paid":
        raise BookingStateConflict("the previous attempt has just been paid")
    booking.attempt += 1
    await start_checkout(booking, session, gateway=gateway, settings=settings, now=now)
    await transition(
        db,
        booking,
        BookingStatus.PENDING.value,
        actor=actor,
        cause="retry",
        at=now,
        detail={"attempt": booking.attempt, "checkout_session_id": booking.checkout_session_id},
    )
    return booking


@dataclass(frozen=True, slots=True)
class BookingView:
    booking: Booking
    session: CoachingSession
    # To book the same coach again: their next session this mentee can book, if any.
    next_session_id: int | None


async def _next_sessions(
    db: AsyncSession, *, coach_ids: set[int], mentee_id: int, now: datetime
) -> dict[int, int]:
    """Per coach, the earliest session ahead that this mentee could book now.

    Not a full one, and not one the mentee already holds: offering either
    would only lead to a 409.
    """
    if not coach_ids:
        return {}
    taken = (
        select(func.count())
        .select_from(Booking)
        .where(
            Booking.coaching_session_id == CoachingSession.id,
            seats_taken_filter(now),  # type: ignore[arg-type]
        )
        .scalar_subquery()
    )
    held = exists().where(
        Booking.coaching_session_id == CoachingSession.id,
        Booking.mentee_id == mentee_id,
        Booking.status.in_([s.value for s in ACTIVE_STATUSES]),
    )
    found = await db.execute(
        select(CoachingSession.coach_id, CoachingSession.id)
        .where(
            CoachingSession.coach_id.in_(coach_ids),
            CoachingSession.starts_at > now,
            CoachingSession.status == SessionStatus.PUBLISHED.value,
            or_(CoachingSession.capacity.is_(None), taken < CoachingSession.capacity),
            ~held,
        )
        .order_by(CoachingSession.coach_id, CoachingSession.starts_at, CoachingSession.id)
        .ext(distinct_on(CoachingSession.coach_id))
    )
    return {coach: sid for coach, sid in found.all()}


async def list_bookings(
    db: AsyncSession, *, mentee_id: int, clock: Clock, limit: int = 100
) -> tuple[list[BookingView], list[BookingView]]:
    """(upcoming soonest first, past latest first), at most ``limit`` of each.

    Upcoming: active bookings of sessions not yet started; past: the rest
    (sessions that started, and cancelled or refunded bookings). Read apart,
    so a long history cannot push the upcoming bookings out of the page.
    """
    now = clock.now()
    base = (
        select(Booking, CoachingSession)
        .join(CoachingSession, CoachingSession.id == Booking.coaching_session_id)
        .where(Booking.mentee_id == mentee_id)
    )
    ahead = (CoachingSession.starts_at > now) & Booking.status.in_(
        [s.value for s in ACTIVE_STATUSES]
    )
    soonest = (CoachingSession.starts_at, Booking.id)
    latest = (CoachingSession.starts_at.desc(), Booking.id.desc())
    upcoming = (await db.execute(base.where(ahead).order_by(*soonest).limit(limit))).all()
    past = (await db.execute(base.where(~ahead).order_by(*latest).limit(limit))).all()
    nexts = await _next_sessions(
        db, coach_ids={s.coach_id for _, s in [*upcoming, *past]}, mentee_id=mentee_id, now=now
    )
    return (
        [BookingView(b, s, nexts.get(s.coach_id)) for b, s in upcoming],
        [BookingView(b, s, nexts.get(s.coach_id)) for b, s in past],
    )
