"""The mentee's pages: sessions to book, their bookings, and one booking (where Stripe
Checkout sends the browser back: ``/bookings/{id}?checkout=success|cancelled``, the URLs
sessions/checkout.py gives Stripe).

Every action is a call to the ``/v1`` API from the page (static/app.js); these handlers
only read. A booking page is also finance's and admins' view of a booking's history.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter, QueryParameter
from sqlalchemy import text

from api.booking_queries import REFUNDABLE, STAFF, readable_booking
from api.deps import AppCtx, DbSession
from api.routes.pages_base import (
    PageResponse,
    forbidden,
    not_found,
    render,
    to_signin,
    viewer_of,
)
from core.money import currency_exponent
from core.users import provision_user
from sessions.booking_list import list_bookings
from sessions.catalog import list_sessions
from sessions.errors import BookingNotFound
from sessions.models import ACTIVE_STATUSES

SESSION_ROWS = 50
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000)]
Id = Annotated[int, Parameter(gt=0, le=2**63 - 1)]
Checkout = Annotated[str | None, QueryParameter(max_length=20)]


async def _names(db: DbSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await db.execute(
        text(
            "SELECT u.id, COALESCE(p.display_name, u.display_name, u.sub) FROM users u "
            "LEFT JOIN coach_profiles p ON p.user_id = u.id WHERE u.id = ANY(:ids)"
        ),
        {"ids": list(ids)},
    )
    return {int(i): str(n) for i, n in rows}


async def _held(db: DbSession, mentee_id: int, session_ids: list[int]) -> dict[int, int]:
    """session id -> the mentee's active booking of it (one per session at most)."""
    if not session_ids:
        return {}
    rows = await db.execute(
        text(
            "SELECT coaching_session_id, id FROM bookings WHERE mentee_id = :m "
            "AND coaching_session_id = ANY(:s) AND status = ANY(:st)"
        ),
        {"m": mentee_id, "s": session_ids, "st": [s.value for s in ACTIVE_STATUSES]},
    )
    return {int(s): int(b) for s, b in rows}


@get("/sessions", include_in_schema=False)
async def sessions_page(
    request: Request[Any, Any, Any], ctx: AppCtx, db: DbSession, offset: Offset = 0
) -> PageResponse:
    viewer = await viewer_of(request, ctx)
    if viewer is None:
        return to_signin(request)
    views = await list_sessions(db, clock=ctx.clock, limit=SESSION_ROWS + 1, offset=offset)
    more = len(views) > SESSION_ROWS
    views = views[:SESSION_ROWS]
    held: dict[int, int] = {}
    if viewer.role == "mentee":
        me = await provision_user(
            db, issuer=viewer.issuer, sub=viewer.sub, role=viewer.role, now=ctx.clock.now()
        )
        held = await _held(db, me.id, [v.session.id for v in views])
    return render(
        "sessions.html",
        viewer=viewer,
        sessions=views,
        coaches=await _names(db, {v.session.coach_id for v in views}),
        held=held,
        can_book=viewer.role == "mentee",
        offset=offset,
        next_offset=offset + SESSION_ROWS if more else None,
        prev_offset=max(offset - SESSION_ROWS, 0) if offset else None,
    )


@get("/bookings", include_in_schema=False)
async def bookings_page(
    request: Request[Any, Any, Any], ctx: AppCtx, db: DbSession
) -> PageResponse:
    viewer = await viewer_of(request, ctx)
    if viewer is None:
        return to_signin(request)
    if viewer.role != "mentee":
        return forbidden(viewer, "This page lists a mentee's own bookings.")
    me = await provision_user(
        db, issuer=viewer.issuer, sub=viewer.sub, role=viewer.role, now=ctx.clock.now()
    )
    upcoming, past = await list_bookings(db, mentee_id=me.id, clock=ctx.clock)
    coaches = await _names(db, {v.session.coach_id for v in [*upcoming, *past]})
    return render(
        "bookings.html",
        viewer=viewer,
        upcoming=upcoming,
        past=past,
        coaches=coaches,
        now=ctx.clock.now(),
    )


@get("/bookings/{booking_id:int}", include_in_schema=False)
async def booking_page(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    db: DbSession,
    booking_id: Id,
    checkout: Checkout = None,
) -> PageResponse:
    viewer = await viewer_of(request, ctx)
    if viewer is None:
        return to_signin(request)
    me = await provision_user(
        db, issuer=viewer.issuer, sub=viewer.sub, role=viewer.role, now=ctx.clock.now()
    )
    try:
        rec = await readable_booking(db, booking_id, viewer_id=me.id, role=viewer.role)
    except BookingNotFound:
        return not_found(viewer, f"There is no booking {booking_id} of yours.")
    now = ctx.clock.now()
    b = rec.booking
    hold_open = b.status == "pending" and b.hold_expires_at is not None and b.hold_expires_at > now
    return render(
        "booking.html",
        viewer=viewer,
        rec=rec,
        b=b,
        s=rec.session,
        staff=viewer.role in STAFF,
        own=viewer.role == "mentee",
        checkout=checkout if checkout in ("success", "cancelled") else None,
        hold_open=hold_open,
        # The window binds the mentee; an admin may refund any time (sessions/refunds.py).
        may_refund=(viewer.role == "mentee" and rec.mentee_may_refund(now))
        or (viewer.role == "admin" and b.status in REFUNDABLE and rec.remaining > 0),
        exponent=currency_exponent(b.currency),
        now=now,
    )
