"""``GET /v1/bookings/{id}/history``: a booking's state now and every change it went
through (when, who or what, why, from and to), for finance staff, admins and the
booking's own mentee (whose booking page polls it while Stripe confirms a payment)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Router, get
from litestar.params import Parameter

from api.booking_queries import STAFF, BookingRecord, readable_booking
from api.deps import AuthUser, DbSession, require_role
from core.users import Role

Id = Annotated[int, Parameter(gt=0, le=2**63 - 1)]


class BookingState(msgspec.Struct):
    id: int
    status: str
    coaching_session_id: int
    title: str
    coach_id: int
    mentee_id: int
    starts_at: datetime
    amount: int
    currency: str
    amount_refunded: int
    refundable_amount: int  # what a refund may still return
    refundable_until: datetime  # the mentee's refund window closes then
    paid_at: datetime | None


class HistoryEventOut(msgspec.Struct):
    at: datetime
    actor: str  # user / stripe / system
    actor_user_id: int | None
    actor_role: str | None
    cause: str
    from_status: str | None
    to_status: str
    # Amounts and Stripe ids of the change; only for finance staff and admins.
    detail: dict[str, Any]


class BookingHistoryOut(msgspec.Struct):
    booking: BookingState
    events: list[HistoryEventOut]


def history_out(rec: BookingRecord, *, staff: bool) -> BookingHistoryOut:
    b, s = rec.booking, rec.session
    return BookingHistoryOut(
        booking=BookingState(
            id=b.id, status=b.status, coaching_session_id=s.id, title=s.title,
            coach_id=b.coach_id, mentee_id=b.mentee_id, starts_at=s.starts_at, amount=b.amount,
            currency=b.currency, amount_refunded=b.amount_refunded,
            refundable_amount=rec.remaining if b.payment_intent_id else 0,
            refundable_until=rec.refundable_until, paid_at=b.paid_at,
        ),
        events=[
            HistoryEventOut(
                at=e.at, actor=e.actor_kind, actor_user_id=e.actor_user_id,
                actor_role=e.actor_role, cause=e.cause, from_status=e.from_status,
                to_status=e.to_status, detail=e.detail if staff else {},
            )
            for e in rec.events
        ],
    )  # fmt: skip


@get(
    "/bookings/{booking_id:int}/history",
    guards=[require_role(Role.MENTEE, Role.FINANCE, Role.ADMIN)],
    summary="A booking's state and history",
)
async def booking_history(
    booking_id: Id, db: DbSession, current_user: AuthUser
) -> BookingHistoryOut:
    role = str(current_user.role)
    rec = await readable_booking(db, booking_id, viewer_id=current_user.id, role=role)
    return history_out(rec, staff=role in STAFF)


router = Router(path="/v1", route_handlers=[booking_history], tags=["bookings"])
