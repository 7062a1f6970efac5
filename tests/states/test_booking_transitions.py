"""sessions.audit.transition accepts exactly BOOKING_ALLOWED's edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import FrozenClock
from core.errors import IllegalTransition
from core.settings import Settings
from sessions.audit import Actor, created, transition
from sessions.models import BOOKING_ALLOWED, Booking, BookingEvent, BookingStatus
from tests.sessions.helpers import make_coach, make_session, make_user

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


async def _booking(db: AsyncSession) -> Booking:
    coach = await make_coach(db, Settings(), NOW)
    session = await make_session(db, coach, FrozenClock(NOW))
    mentee = await make_user(db, "mentee", NOW)
    booking = Booking(
        coaching_session_id=session.id, mentee_id=mentee, coach_id=coach,
        status=BookingStatus.PENDING, amount=10000, currency="usd", fee_bps=1000,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    db.add(booking)
    await db.flush()
    await created(db, booking, actor=Actor.system(), cause="test", at=NOW)
    return booking


async def _events(db: AsyncSession, booking: Booking) -> list[tuple[str | None, str]]:
    rows = await db.execute(
        select(BookingEvent.from_status, BookingEvent.to_status)
        .where(BookingEvent.booking_id == booking.id)
        .order_by(BookingEvent.id)
    )
    return [(a, b) for a, b in rows.all()]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(targets=st.lists(st.sampled_from(list(BookingStatus)), min_size=1, max_size=12))
async def test_transition_follows_the_table(db: AsyncSession, targets: list[BookingStatus]) -> None:
    example = await db.begin_nested()
    try:
        booking = await _booking(db)
        expected: list[tuple[str | None, str]] = [(None, BookingStatus.PENDING)]
        for i, to in enumerate(targets):
            before = BookingStatus(booking.status)
            at = NOW + timedelta(minutes=i + 1)
            if to in BOOKING_ALLOWED[before]:
                await transition(db, booking, to, actor=Actor.system(), cause="t", at=at)
                expected.append((before, to))
                assert booking.status == to
            else:
                with pytest.raises(IllegalTransition):
                    await transition(db, booking, to, actor=Actor.system(), cause="t", at=at)
                assert booking.status == before  # nothing changed, nothing written
        await db.refresh(booking)
        events = await _events(db, booking)
        assert events == expected
        assert booking.status == expected[-1][1]
        # The stored history is a walk along the table's edges.
        for a, b in events[1:]:
            assert b in BOOKING_ALLOWED[BookingStatus(a)]
    finally:
        await example.rollback()


def test_every_status_has_a_row() -> None:
    assert set(BOOKING_ALLOWED) == set(BookingStatus)


def test_terminal_edges_the_code_never_takes_are_refused() -> None:
    from sessions.models import check_booking_transition

    for bad in [
        (BookingStatus.PAID, BookingStatus.PENDING),
        (BookingStatus.PAID, BookingStatus.CANCELLED),
        (BookingStatus.CANCELLED, BookingStatus.PAID),
        (BookingStatus.REFUNDED, BookingStatus.PENDING),
    ]:
        with pytest.raises(IllegalTransition):
            check_booking_transition(*bad)
