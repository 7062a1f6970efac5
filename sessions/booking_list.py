"""A mentee's bookings as they see them: upcoming and past, and where to book the coach again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from sessions.catalog import seats_taken_filter
from sessions.models import ACTIVE_STATUSES, Booking, CoachingSession, SessionStatus


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
