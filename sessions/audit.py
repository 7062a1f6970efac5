"""Booking state changes: one audit row per change (time, actor, cause, from, to)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import IllegalTransition
from sessions.models import (
    BOOKING_INITIAL,
    Booking,
    BookingEvent,
    BookingStatus,
    check_booking_transition,
)

ActorKind = Literal["user", "stripe", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    user_id: int | None = None
    role: str | None = None

    @classmethod
    def user(cls, user_id: int, role: str) -> Actor:
        return cls("user", user_id, role)

    @classmethod
    def stripe(cls) -> Actor:
        return cls("stripe")

    @classmethod
    def system(cls) -> Actor:
        return cls("system")


async def transition(
    db: AsyncSession,
    booking: Booking,
    to_status: BookingStatus | str,
    *,
    actor: Actor,
    cause: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    """Change the booking's status and write the audit row in the same transaction.

    A row is written even when the status stays the same but something the
    audit must show happened (a late payment refunded on a cancelled booking).
    Raises ``IllegalTransition`` for a change ``BOOKING_ALLOWED`` does not have,
    before anything is written.
    """
    from_status = booking.status
    to_status = BookingStatus(to_status)
    check_booking_transition(from_status, to_status)
    booking.status = to_status
    booking.updated_at = at
    db.add(
        BookingEvent(
            booking_id=booking.id,
            at=at,
            actor_kind=actor.kind,
            actor_user_id=actor.user_id,
            cause=cause,
            from_status=from_status,
            to_status=to_status,
            detail=detail or {},
        )
    )
    await db.flush()


async def created(
    db: AsyncSession, booking: Booking, *, actor: Actor, cause: str, at: datetime
) -> None:
    if booking.status not in BOOKING_INITIAL:
        raise IllegalTransition("booking", None, booking.status)
    db.add(
        BookingEvent(
            booking_id=booking.id,
            at=at,
            actor_kind=actor.kind,
            actor_user_id=actor.user_id,
            cause=cause,
            from_status=None,
            to_status=booking.status,
            detail={"amount": booking.amount, "currency": booking.currency},
        )
    )
    await db.flush()
