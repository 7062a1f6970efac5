"""Admin: Stripe webhook events that would not go through (core.inbox_failures).

``GET /v1/admin/webhooks/failed`` lists parked events (``state=retrying``: those
still being retried), newest last attempt first, paged with ``limit`` and
``cursor``; ``POST /v1/admin/webhooks/{event_id}/replay`` puts a parked event
back to be processed once more (by the retry job or worker, within seconds),
audited with the admin's id.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Router, get, post
from litestar.params import Parameter, QueryParameter

from api.deps import AppCtx, AuthUser, DbSession, require_role
from core.errors import InvalidInput
from core.inbox_admin import (
    MAX_PAGE,
    FailedEvent,
    FailedState,
    WebhookEventNotFound,
    failed_events,
    parked_count,
    replay,
)
from core.users import Role
from ledger.reports import decode_keyed_cursor, encode_cursor

_LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: str.isdigit() takes "²"
_ROW_ID = re.compile(r"[0-9]{1,19}")
# Stripe's event ids (evt_...); anything else cannot be stored, so it is a 404.
_EVENT_ID = re.compile(r"[A-Za-z0-9_]{1,255}")


class FailedWebhookOut(msgspec.Struct):
    event_id: str
    type: str
    endpoint: str  # platform | connect
    account: str | None
    status: str  # parked | failed
    attempts: int
    handler_failures: int  # of the current streak: these park it
    transient_failures: int  # Stripe or the database away: these do not
    replays: int
    last_error: str | None  # an excerpt, secrets removed
    received_at: datetime
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    parked_at: datetime | None
    next_attempt_at: datetime | None


class FailedWebhooksPage(msgspec.Struct):
    data: list[FailedWebhookOut]
    next_cursor: str | None
    parked: int  # every parked event, not only this page's


class ReplayOut(msgspec.Struct):
    event: FailedWebhookOut
    replayed: bool  # False: it was waiting to be processed already


def _out(e: FailedEvent) -> FailedWebhookOut:
    return FailedWebhookOut(**{f: getattr(e, f) for f in FailedWebhookOut.__struct_fields__})


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 50
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidInput(f"must be an integer between 1 and {MAX_PAGE}", field="limit")
    return int(raw)


def _state(raw: str | None) -> FailedState:
    try:
        return FailedState(raw or FailedState.PARKED)
    except ValueError:
        raise InvalidInput("must be parked or retrying", field="state") from None


def _cursor(raw: str | None) -> tuple[datetime, int] | None:
    if not raw:
        return None
    when, key = decode_keyed_cursor(raw)
    if not _ROW_ID.fullmatch(key):
        raise InvalidInput("invalid cursor", field="cursor")
    return when, int(key)


@get("/admin/webhooks/failed", guards=[require_role(Role.ADMIN)])
async def list_failed(
    db: DbSession,
    # "state" is a name Litestar keeps for itself: taken from the query by alias.
    kind: Annotated[str | None, QueryParameter(name="state", max_length=20)] = None,
    limit: Annotated[str | None, QueryParameter(max_length=20)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
) -> FailedWebhooksPage:
    """Events parked after failing (``state=retrying``: failing, still retried)."""
    size, which, before = _limit(limit), _state(kind), _cursor(cursor)
    items = await failed_events(db, state=which, limit=size + 1, before=before)
    page = items[:size]
    more = len(items) > size and bool(page)
    return FailedWebhooksPage(
        data=[_out(e) for e in page],
        next_cursor=encode_cursor(*page[-1].cursor) if more else None,
        parked=await parked_count(db),
    )


@post(
    "/admin/webhooks/{event_id:str}/replay",
    guards=[require_role(Role.ADMIN)],
    status_code=202,
    request_max_body_size=4 * 1024,
)
async def replay_event(
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    event_id: str = Parameter(title="Stripe event id (evt_...)"),
) -> ReplayOut:
    if not _EVENT_ID.fullmatch(event_id):
        raise WebhookEventNotFound(f"no webhook event {event_id[:80]!r}")
    done = await replay(db, event_id=event_id, now=ctx.clock.now(), actor_user_id=current_user.id)
    return ReplayOut(event=_out(done.event), replayed=done.replayed)


router = Router(path="/v1", route_handlers=[list_failed, replay_event])
