"""One booking as its pages and ``GET /v1/bookings/{id}/history`` show it: the booking, its
session and people, its refunds, and every state change (``booking_events``).

Who may read it is decided here, once: the booking's own mentee, finance staff and
admins. Anyone else is told it does not exist (404), so ids reveal nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.users import Role
from sessions.errors import BookingNotFound
from sessions.models import Booking, BookingStatus, CoachingSession, Refund

STAFF = frozenset({Role.FINANCE.value, Role.ADMIN.value})
REFUNDABLE = frozenset({BookingStatus.PAID.value, BookingStatus.PARTIALLY_REFUNDED.value})


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    id: int
    at: datetime
    actor_kind: str  # user / stripe / system
    actor_user_id: int | None
    actor_role: str | None
    actor_name: str | None
    cause: str
    from_status: str | None
    to_status: str
    detail: dict[str, Any]


@dataclass
class BookingRecord:
    booking: Booking
    session: CoachingSession
    coach_name: str
    mentee_name: str
    refunds: list[Refund] = field(default_factory=list)
    events: list[HistoryEvent] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """What can still be refunded (by someone: the window binds the mentee only)."""
        return self.booking.amount - self.booking.amount_refunded

    @property
    def refundable_until(self) -> datetime:
        s = self.session
        return s.starts_at - timedelta(hours=s.refund_window_hours)

    def mentee_may_refund(self, now: datetime) -> bool:
        return (
            self.booking.status in REFUNDABLE
            and self.remaining > 0
            and self.booking.payment_intent_id is not None
            and now <= self.refundable_until
        )


async def _name(db: AsyncSession, user_id: int) -> str:
    found = await db.execute(
        text("SELECT COALESCE(display_name, sub) FROM users WHERE id = :u"), {"u": user_id}
    )
    return str(found.scalar_one_or_none() or f"user {user_id}")


async def readable_booking(
    db: AsyncSession, booking_id: int, *, viewer_id: int, role: str
) -> BookingRecord:
    """The booking with its history, if ``viewer_id`` (of ``role``) may see it."""
    booking = await db.get(Booking, booking_id)
    own = role == Role.MENTEE.value and booking is not None and booking.mentee_id == viewer_id
    if booking is None or not (own or role in STAFF):
        raise BookingNotFound(f"booking {booking_id} does not exist")
    session = await db.get(CoachingSession, booking.coaching_session_id)
    assert session is not None  # a foreign key
    refunds = (
        (
            await db.execute(
                select(Refund).where(Refund.booking_id == booking.id).order_by(Refund.id)
            )
        )
        .scalars()
        .all()
    )
    rows = await db.execute(
        text(
            "SELECT e.id, e.at, e.actor_kind, e.actor_user_id, u.role, "
            "COALESCE(u.display_name, u.sub) AS name, e.cause, e.from_status, e.to_status, "
            "e.detail FROM booking_events e LEFT JOIN users u ON u.id = e.actor_user_id "
            "WHERE e.booking_id = :b ORDER BY e.at, e.id"
        ),
        {"b": booking.id},
    )
    events = [
        HistoryEvent(
            id=r.id, at=r.at, actor_kind=r.actor_kind, actor_user_id=r.actor_user_id,
            actor_role=r.role, actor_name=r.name, cause=r.cause, from_status=r.from_status,
            to_status=r.to_status, detail=dict(r.detail or {}),
        )
        for r in rows
    ]  # fmt: skip
    return BookingRecord(
        booking=booking,
        session=session,
        coach_name=await _name(db, booking.coach_id),
        mentee_name=await _name(db, booking.mentee_id),
        refunds=list(refunds),
        events=events,
    )
