"""Coaching sessions: publish, list, read. Validation names the offending field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import ConnectAccount
from core.clock import Clock
from core.money import CURRENCIES, format_amount, minimum_charge
from sessions.errors import CoachCannotTakeCharges, InvalidSessionInput, SessionNotFound
from sessions.models import (
    SEATED_STATUSES,
    Booking,
    BookingStatus,
    CoachingSession,
    SessionStatus,
)

MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_CAPACITY = 10_000
MAX_REFUND_WINDOW_HOURS = 24 * 365
# Stripe Checkout takes at most 8 digits per amount (99,999,999 minor units).
MAX_PRICE = 99_999_999
MAX_DURATION = timedelta(days=7)
MAX_AHEAD = timedelta(days=2 * 365)


def _bad(field: str, message: str) -> InvalidSessionInput:
    return InvalidSessionInput(f"{field}: {message}", field=field)


def _text(field: str, value: object, *, min_len: int, max_len: int) -> str:
    if not isinstance(value, str):
        raise _bad(field, "must be a string")
    value = value.strip()
    if not min_len <= len(value) <= max_len:
        raise _bad(field, f"must be {min_len}..{max_len} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise _bad(field, "must not contain control characters")
    return value


def _int(field: str, value: object, *, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(field, "must be an integer")
    if not lo <= value <= hi:
        raise _bad(field, f"must be between {lo} and {hi}")
    return value


def _time(field: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _bad(field, "must be a date-time with a time zone")
    return value


def validate_currency(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in CURRENCIES:
        raise _bad("currency", "must be a supported ISO 4217 code")
    return value.lower()


def check_chargeable(price: int, currency: str) -> None:
    """Refuse a price Stripe will not charge: every booking of it would fail (502)."""
    minimum = minimum_charge(currency)
    if price < minimum:
        raise _bad(
            "price",
            f"must be at least {format_amount(minimum, currency)} (Stripe's minimum charge)",
        )


async def coach_can_take_charges(db: AsyncSession, coach_id: int) -> bool:
    found = await db.execute(
        select(ConnectAccount.charges_enabled).where(ConnectAccount.coach_id == coach_id)
    )
    return bool(found.scalar_one_or_none())


async def create_session(
    db: AsyncSession,
    *,
    coach_id: int,
    title: object,
    description: object = "",
    starts_at: object,
    ends_at: object,
    price: object,
    currency: object,
    capacity: object = None,
    refund_window_hours: object = 24,
    clock: Clock,
) -> CoachingSession:
    """Publish a session. The coach must have a Connect account that can take charges."""
    now = clock.now()
    clean_title = _text("title", title, min_len=1, max_len=MAX_TITLE)
    clean_desc = _text("description", description or "", min_len=0, max_len=MAX_DESCRIPTION)
    start = _time("starts_at", starts_at)
    end = _time("ends_at", ends_at)
    if start <= now:
        raise _bad("starts_at", "must be in the future")
    if start > now + MAX_AHEAD:
        raise _bad("starts_at", "must be within two years")
    if end <= start:
        raise _bad("ends_at", "must be after starts_at")
    if end - start > MAX_DURATION:
        raise _bad("ends_at", "a session lasts at most 7 days")
    clean_price = _int("price", price, lo=1, hi=MAX_PRICE)
    clean_currency = validate_currency(currency)
    check_chargeable(clean_price, clean_currency)
    clean_capacity = None if capacity is None else _int("capacity", capacity, lo=1, hi=MAX_CAPACITY)
    window = _int("refund_window_hours", refund_window_hours, lo=0, hi=MAX_REFUND_WINDOW_HOURS)
    if not await coach_can_take_charges(db, coach_id):
        raise CoachCannotTakeCharges("finish Stripe onboarding before publishing a session")
    row = CoachingSession(
        coach_id=coach_id,
        title=clean_title,
        description=clean_desc,
        starts_at=start,
        ends_at=end,
        price=clean_price,
        currency=clean_currency,
        capacity=clean_capacity,
        refund_window_hours=window,
        status=SessionStatus.PUBLISHED.value,
        created_at=now,
        updated_at=now,
    )
    db.add(row)
    await db.flush()
    return row


@dataclass(frozen=True, slots=True)
class SessionView:
    session: CoachingSession
    seats_taken: int

    @property
    def seats_left(self) -> int | None:
        cap = self.session.capacity
        return None if cap is None else max(cap - self.seats_taken, 0)


def seats_taken_filter(now: datetime) -> object:
    """Bookings holding a seat: paid ones, and pending ones whose checkout has not expired."""
    return or_(
        Booking.status.in_([s.value for s in SEATED_STATUSES]),
        (Booking.status == BookingStatus.PENDING.value) & (Booking.hold_expires_at > now),
    )


async def count_seats(
    db: AsyncSession, session_id: int, *, now: datetime, exclude_booking: int | None = None
) -> int:
    stmt = select(func.count()).where(
        Booking.coaching_session_id == session_id,
        seats_taken_filter(now),  # type: ignore[arg-type]
    )
    if exclude_booking is not None:
        stmt = stmt.where(Booking.id != exclude_booking)
    return int((await db.execute(stmt)).scalar_one())


async def get_session(db: AsyncSession, session_id: int, *, clock: Clock) -> SessionView:
    row = await db.get(CoachingSession, session_id)
    if row is None:
        raise SessionNotFound(f"coaching session {session_id} does not exist")
    return SessionView(row, await count_seats(db, row.id, now=clock.now()))


async def lock_session(db: AsyncSession, session_id: int) -> CoachingSession:
    """The session row under FOR UPDATE: seat counts and bookings serialise on it."""
    row = (
        await db.execute(
            select(CoachingSession)
            .where(CoachingSession.id == session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if row is None:
        raise SessionNotFound(f"coaching session {session_id} does not exist")
    return row


async def list_sessions(
    db: AsyncSession,
    *,
    clock: Clock,
    coach_id: int | None = None,
    include_past: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[SessionView]:
    now = clock.now()
    stmt = select(CoachingSession).order_by(CoachingSession.starts_at, CoachingSession.id)
    if coach_id is not None:
        stmt = stmt.where(CoachingSession.coach_id == coach_id)
    if not include_past:
        stmt = stmt.where(
            CoachingSession.starts_at > now,
            CoachingSession.status == SessionStatus.PUBLISHED.value,
        )
    rows = (await db.execute(stmt.limit(limit).offset(offset))).scalars().all()
    if not rows:
        return []
    counts = dict(
        (
            await db.execute(
                select(Booking.coaching_session_id, func.count())
                .where(
                    Booking.coaching_session_id.in_([r.id for r in rows]),
                    seats_taken_filter(now),  # type: ignore[arg-type]
                )
                .group_by(Booking.coaching_session_id)
            )
        ).all()
    )
    return [SessionView(r, int(counts.get(r.id, 0))) for r in rows]
