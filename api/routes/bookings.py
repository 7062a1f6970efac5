"""A mentee's bookings: list (upcoming / past), cancel, retry, refund."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import Parameter

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from api.routes.sessions import BookingCreated, booking_created
from core.money import MAX_AMOUNT, split
from core.users import Role
from sessions import booking_changes as svc
from sessions import booking_list
from sessions.audit import Actor
from sessions.booking import get_booking
from sessions.errors import BookingNotFound
from sessions.refunds import MAX_REASON, PLAIN_TEXT, request_refund

Id = Annotated[int, Parameter(gt=0, le=2**63 - 1)]


class RefundRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(gt=0, le=MAX_AMOUNT)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON, pattern=PLAIN_TEXT)] | None = None


class RefundOut(msgspec.Struct):
    id: int
    booking_id: int
    stripe_refund_id: str
    amount: int
    currency: str
    platform_fee_part: int
    coach_part: int
    status: str


class BookingOut(msgspec.Struct):
    id: int
    status: str
    coaching_session_id: int
    title: str
    coach_id: int
    starts_at: datetime
    ends_at: datetime
    amount: int
    currency: str
    amount_refunded: int
    checkout_url: str | None
    refundable_until: datetime
    # To book the same coach again: their next session this mentee can book (ahead,
    # a seat free, not held already), and where to POST for it; null when none.
    next_session_id: int | None
    book_again_url: str | None


class BookingFee(msgspec.Struct):
    fee_bps: int
    platform_fee: int  # of the amount paid, before refunds
    coach_share: int


class BookingDetailOut(msgspec.Struct):
    id: int
    status: str
    coaching_session_id: int
    coach_id: int
    mentee_id: int
    amount: int
    currency: str
    amount_refunded: int
    created_at: datetime
    paid_at: datetime | None
    # The platform's fee and the coach's share: the mentee, finance and admin
    # see it; null for the session's coach (their share is on their earnings).
    fee: BookingFee | None


class BookingList(msgspec.Struct):
    upcoming: list[BookingOut]
    past: list[BookingOut]


def _out(v: booking_list.BookingView) -> BookingOut:
    b, s = v.booking, v.session
    return BookingOut(
        id=b.id,
        status=b.status,
        coaching_session_id=s.id,
        title=s.title,
        coach_id=s.coach_id,
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        amount=b.amount,
        currency=b.currency,
        amount_refunded=b.amount_refunded,
        checkout_url=b.checkout_url if b.status == "pending" else None,
        refundable_until=s.starts_at - timedelta(hours=s.refund_window_hours),
        next_session_id=v.next_session_id,
        book_again_url=(
            None if v.next_session_id is None else f"/v1/sessions/{v.next_session_id}/bookings"
        ),
    )


def _actor(user: AuthUser) -> Actor:
    return Actor.user(user.id, str(user.role))


@get("/bookings", guards=[require_role(Role.MENTEE)])
async def list_bookings(db: DbSession, current_user: AuthUser, ctx: AppCtx) -> BookingList:
    upcoming, past = await booking_list.list_bookings(
        db, mentee_id=current_user.id, clock=ctx.clock
    )
    return BookingList([_out(v) for v in upcoming], [_out(v) for v in past])


@get("/bookings/{booking_id:int}")
async def get_one_booking(
    booking_id: Id, db: DbSession, current_user: AuthUser
) -> BookingDetailOut:
    """One booking, the object outgoing ``booking.*`` events link to: its mentee, its
    session's coach (without the fee), finance and admin; 404 for anyone else."""
    booking = await get_booking(db, booking_id)
    role = current_user.role
    mine = (role == Role.MENTEE and booking.mentee_id == current_user.id) or role in (
        Role.FINANCE,
        Role.ADMIN,
    )
    coach = role == Role.COACH and booking.coach_id == current_user.id
    if not (mine or coach):
        raise BookingNotFound(f"booking {booking_id} does not exist")
    parts = split(booking.amount, booking.fee_bps)
    return BookingDetailOut(
        id=booking.id,
        status=booking.status,
        coaching_session_id=booking.coaching_session_id,
        coach_id=booking.coach_id,
        mentee_id=booking.mentee_id,
        amount=booking.amount,
        currency=booking.currency,
        amount_refunded=booking.amount_refunded,
        created_at=booking.created_at,
        paid_at=booking.paid_at,
        fee=BookingFee(booking.fee_bps, parts.platform_fee, parts.coach_share) if mine else None,
    )


@post(
    "/bookings/{booking_id:int}/cancel",
    status_code=200,
    guards=[require_role(Role.MENTEE, Role.ADMIN)],
)
async def cancel_booking(
    booking_id: Id, db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> BookingCreated:
    b = await svc.cancel_booking(
        db, booking_id=booking_id, actor=_actor(current_user), gateway=ctx.gateway, clock=ctx.clock
    )
    # Its Checkout Session was expired at Stripe: no URL to pay it any more.
    return msgspec.structs.replace(booking_created(b), checkout_url=None)


@post("/bookings/{booking_id:int}/retry", status_code=200, guards=[require_role(Role.MENTEE)])
async def retry_booking(
    booking_id: Id, db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> BookingCreated:
    b = await svc.retry_booking(
        db,
        booking_id=booking_id,
        actor=_actor(current_user),
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
    )
    return booking_created(b)


async def _refund_request(request: Request[Any, Any, Any]) -> RefundRequest:
    return await read_json(request, RefundRequest)


@post(
    "/bookings/{booking_id:int}/refund",
    status_code=201,
    guards=[require_role(Role.MENTEE, Role.COACH, Role.ADMIN)],
    request_max_body_size=2048,
    opt={REQUEST_BODY: RefundRequest},
)
async def refund(
    booking_id: Id,
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
) -> Response[RefundOut]:
    """Full (no amount) or partial refund: the mentee within the window, the coach or an admin.

    Retrying the same request never refunds twice: with the same ``Idempotency-Key``
    header (and body), or without one, the same amount and reason by the same person
    within an hour. A retry answers the first refund with ``Idempotent-Replayed: true``.
    To refund the same amount twice on purpose, send a new ``Idempotency-Key`` each time.
    """
    data = await _refund_request(request)
    answer = await request_refund(
        db,
        booking_id=booking_id,
        actor=_actor(current_user),
        amount=data.amount,
        reason=data.reason,
        gateway=ctx.gateway,
        clock=ctx.clock,
        client_key=request.headers.get("idempotency-key"),
        settings=ctx.settings,
    )
    row = answer.refund
    out = RefundOut(
        id=row.id,
        booking_id=row.booking_id,
        stripe_refund_id=row.stripe_refund_id,
        amount=row.amount,
        currency=row.currency,
        platform_fee_part=row.platform_fee_part,
        coach_part=row.coach_part,
        status=row.status,
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return Response(out, status_code=201, headers=headers)


router = Router(
    path="/v1",
    route_handlers=[list_bookings, get_one_booking, cancel_booking, retry_booking, refund],
)
