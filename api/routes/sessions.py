"""Coaching sessions: publish (coach), list and read (anyone signed in), book (mentee)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter, QueryParameter

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from core.users import Role
from sessions import booking as booking_svc
from sessions import cancellation, catalog
from sessions.audit import Actor
from sessions.models import Booking

MAX_ID = 2**63 - 1
MAX_BODY = 16 * 1024


Id = Annotated[int, Parameter(gt=0, le=MAX_ID)]


class NoFields(msgspec.Struct, forbid_unknown_fields=True):
    """The route takes no fields: no body, or ``{}``."""


class CreateSession(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=catalog.MAX_TITLE)]
    starts_at: Annotated[datetime, msgspec.Meta(tz=True)]
    ends_at: Annotated[datetime, msgspec.Meta(tz=True)]
    price: Annotated[int, msgspec.Meta(gt=0, le=catalog.MAX_PRICE)]
    currency: Annotated[str, msgspec.Meta(pattern="^[a-zA-Z]{3}$")]
    description: Annotated[str, msgspec.Meta(max_length=catalog.MAX_DESCRIPTION)] = ""
    capacity: Annotated[int, msgspec.Meta(ge=1, le=catalog.MAX_CAPACITY)] | None = None
    refund_window_hours: (
        Annotated[int, msgspec.Meta(ge=0, le=catalog.MAX_REFUND_WINDOW_HOURS)] | None
    ) = None


class SessionOut(msgspec.Struct):
    id: int
    coach_id: int
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    price: int
    currency: str
    capacity: int | None
    seats_taken: int
    seats_left: int | None
    refund_window_hours: int
    status: str


class SessionList(msgspec.Struct):
    data: list[SessionOut]


class BookingCreated(msgspec.Struct):
    id: int
    status: str
    coaching_session_id: int
    amount: int
    currency: str
    checkout_session_id: str | None
    checkout_url: str | None
    hold_expires_at: datetime | None


class SessionCancelled(msgspec.Struct):
    session: SessionOut
    refunded: list[int]  # paid bookings refunded in full now
    closed: list[int]  # unpaid bookings cancelled (open checkouts closed)
    # Stripe did not answer: a job retries them with the same idempotency keys.
    refunds_waiting: list[int]
    # Stripe refused (e.g. a disputed charge): finance settles these by hand.
    refunds_refused: list[int]


def session_out(view: catalog.SessionView) -> SessionOut:
    s = view.session
    return SessionOut(
        id=s.id,
        coach_id=s.coach_id,
        title=s.title,
        description=s.description,
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        price=s.price,
        currency=s.currency,
        capacity=s.capacity,
        seats_taken=view.seats_taken,
        seats_left=view.seats_left,
        refund_window_hours=s.refund_window_hours,
        status=s.status,
    )


def booking_created(b: Booking) -> BookingCreated:
    return BookingCreated(
        id=b.id,
        status=b.status,
        coaching_session_id=b.coaching_session_id,
        amount=b.amount,
        currency=b.currency,
        checkout_session_id=b.checkout_session_id,
        checkout_url=b.checkout_url,
        hold_expires_at=b.hold_expires_at,
    )


@post(
    "/sessions",
    status_code=201,
    guards=[require_role(Role.COACH)],
    request_max_body_size=MAX_BODY,
    opt={REQUEST_BODY: CreateSession},
)
async def create_session(
    request: Request[Any, Any, Any], db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> SessionOut:
    data = await read_json(request, CreateSession)
    row = await catalog.create_session(
        db,
        coach_id=current_user.id,
        title=data.title,
        description=data.description,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        price=data.price,
        currency=data.currency,
        capacity=data.capacity,
        refund_window_hours=(
            ctx.settings.refund_window_hours
            if data.refund_window_hours is None
            else data.refund_window_hours
        ),
        clock=ctx.clock,
    )
    return session_out(catalog.SessionView(row, 0))


@get("/sessions")
async def list_sessions(
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    coach_id: Annotated[int | None, Parameter(gt=0, le=MAX_ID)] = None,
    include_past: Annotated[bool, QueryParameter()] = False,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0,
) -> SessionList:
    views = await catalog.list_sessions(
        db,
        clock=ctx.clock,
        coach_id=coach_id,
        include_past=include_past,
        limit=limit,
        offset=offset,
    )
    return SessionList([session_out(v) for v in views])


@get("/sessions/{session_id:int}")
async def get_session(
    session_id: Id, db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> SessionOut:
    return session_out(await catalog.get_session(db, session_id, clock=ctx.clock))


@post(
    "/sessions/{session_id:int}/bookings",
    status_code=201,
    guards=[require_role(Role.MENTEE)],
    request_max_body_size=1024,
    opt={REQUEST_BODY: NoFields},
)
async def create_booking(
    session_id: Id,
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
) -> BookingCreated:
    """Hold a seat and answer the Stripe Checkout URL to pay it (no body, or ``{}``)."""
    # The price is the session's: a field sent here (an amount, a seat count)
    # is refused rather than silently dropped.
    await read_json(request, NoFields)
    b = await booking_svc.book(
        db,
        session_id=session_id,
        mentee_id=current_user.id,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
    )
    return booking_created(b)


@post(
    "/sessions/{session_id:int}/cancel",
    status_code=200,
    guards=[require_role(Role.COACH, Role.ADMIN)],
    request_max_body_size=1024,
    opt={REQUEST_BODY: NoFields},
)
async def cancel_session(
    session_id: Id,
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
) -> SessionCancelled:
    """Cancel a session (its coach before it starts, an admin any time) and refund its
    paid bookings in full; repeating it settles whatever is still owed (no body, or ``{}``)."""
    await read_json(request, NoFields)
    actor = Actor.user(current_user.id, current_user.role)
    await cancellation.cancel_session(db, session_id=session_id, actor=actor, clock=ctx.clock)
    # Committed before any refund: each booking is then settled in a
    # transaction of its own, so a failure half-way loses no refund already made.
    await db.commit()
    report = await cancellation.settle_owed(
        ctx.factory, gateway=ctx.gateway, clock=ctx.clock, session_id=session_id
    )
    view = await catalog.get_session(db, session_id, clock=ctx.clock)
    return SessionCancelled(
        session=session_out(view),
        refunded=report.refunded,
        closed=report.closed,
        refunds_waiting=report.waiting,
        refunds_refused=report.refused,
    )


router = Router(
    path="/v1",
    route_handlers=[create_session, list_sessions, get_session, create_booking, cancel_session],
)
