"""The admin page: outgoing webhooks (endpoints, health, a delivery log), what the demo's
receiver got, and Stripe events parked for a person.

Admins only: the page shows where coachpay sends events and lets them change that
(the buttons and forms call ``/v1/admin/...`` through ``static/app.js``). Finance staff
see the webhook health line on their dashboard (``webhook_health``), not this page.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.demo_receiver import DemoReceiver
from api.deps import AppCtx, DbSession
from api.routes.pages_base import PageResponse, forbidden, invalid, render, to_signin, viewer_of
from core.inbox_admin import FailedState, failed_events, parked_count
from core.outbox import endpoints, health
from core.outbox.errors import EndpointNotFound

LOG_ROWS = 50
PARKED_ROWS = 20
RECEIVER_ROWS = 100
HEALTH_FIGURES = (
    ("endpoints", "Endpoints"), ("enabled", "Enabled"), ("failing", "Failing"),
    ("auto_disabled", "Disabled after failing"), ("pending", "Deliveries pending"),
    ("stalled", "Stalled (no worker sending)"), ("delivered_24h", "Delivered, 24 h"),
    ("failed_attempts_24h", "Failed attempts, 24 h"), ("given_up_24h", "Given up, 24 h"),
    ("fan_out_lag", "Events not fanned out yet"),
)  # fmt: skip


async def webhook_health(db: AsyncSession, ctx: AppCtx) -> health.Health:
    """The figures behind ``GET /v1/admin/events/health`` (the finance page's line too)."""
    return await health.health(db, now=ctx.clock.now())


def _parse_log(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise ValueError(value)
    n = int(value)
    if not 1 <= n <= endpoints.MAX_ID:
        raise ValueError(value)
    return n


@get("/admin", include_in_schema=False)
async def admin_page(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    db: DbSession,
    log: Annotated[str | None, QueryParameter(name="log", max_length=20)] = None,
) -> PageResponse:
    viewer = await viewer_of(request, ctx)
    if viewer is None:
        return to_signin(request)
    if viewer.role != "admin":
        return forbidden(viewer, "The admin page is for admins.")
    try:
        log_id = _parse_log(log)
    except ValueError:
        return invalid(viewer, "log: an endpoint id")
    shown, attempts = None, []
    if log_id is not None:
        try:
            shown = await endpoints.get_endpoint(db, log_id)
        except EndpointNotFound:
            return invalid(viewer, f"log: no endpoint {log_id}")
        attempts = await endpoints.attempts(db, endpoint_id=log_id, before=None, limit=LOG_ROWS)
    receiver = request.app.state.get("demo_receiver")
    lines = receiver.newest_first()[:RECEIVER_ROWS] if isinstance(receiver, DemoReceiver) else None
    return render(
        "admin.html",
        viewer=viewer,
        health=(await webhook_health(db, ctx)).as_dict(),
        figures=HEALTH_FIGURES,
        endpoints=[endpoints.view(ep) for ep in await endpoints.list_endpoints(db)],
        log_endpoint=endpoints.view(shown) if shown is not None else None,
        attempts=attempts,
        log_rows=LOG_ROWS,
        receiver=receiver if lines is not None else None,
        receiver_lines=lines,
        parked=await failed_events(db, state=FailedState.PARKED, limit=PARKED_ROWS),
        parked_total=await parked_count(db),
        parked_rows=PARKED_ROWS,
    )
