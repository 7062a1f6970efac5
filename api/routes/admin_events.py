"""Admin: outgoing events and the webhook endpoints they are delivered to.

``/v1/admin/events`` lists the outbox (a cursor: ``after`` = the previous
page's ``next_cursor``, or ``latest`` for only what comes next), ``/types``
the catalogue, ``/health`` the delivery figures, ``/{evt_…}`` one event.
``/v1/admin/events/endpoints`` registers endpoints (the signing secret is in
the answer once), changes them, rotates the secret, reads the delivery log
and replays events. Bodies are decoded strictly (msgspec, unknown fields
refused); the rules behind them live in core.outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, patch, post
from litestar.params import Parameter, QueryParameter

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from core.errors import InvalidInput
from core.outbox import catalog, endpoints, events, health
from core.outbox.models import Endpoint
from core.users import Role

MAX_BODY_BYTES = 16 * 1024
MAX_PAGE = 500
ADMIN = [require_role(Role.ADMIN)]
TypeName = Annotated[str, msgspec.Meta(max_length=64)]


class CreateEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    event_types: Annotated[list[TypeName], msgspec.Meta(min_length=1, max_length=64)] = (
        msgspec.field(default_factory=lambda: [catalog.ALL_TYPES])
    )
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    enabled: bool = True
    # One delivery at a time, in event order (false: concurrent, any order).
    ordered: bool = True


class EndpointChanges(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    event_types: (
        Annotated[list[TypeName], msgspec.Meta(min_length=1, max_length=64)] | msgspec.UnsetType
    ) = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=500)] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    ordered: bool | msgspec.UnsetType = msgspec.UNSET


class RotateRequest(msgspec.Struct, forbid_unknown_fields=True):
    # How long the old secret still signs (a second signature), in hours.
    overlap_hours: Annotated[int, msgspec.Meta(ge=0, le=endpoints.MAX_OVERLAP_HOURS)] = (
        endpoints.DEFAULT_OVERLAP_HOURS
    )


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One event (``event_id``) or every event of ``[from, to)`` the endpoint takes."""

    event_id: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType = msgspec.UNSET
    from_: datetime | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="from")
    to: datetime | msgspec.UnsetType = msgspec.UNSET


class EndpointOut(msgspec.Struct):
    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    ordered: bool
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WithSecret(msgspec.Struct):
    endpoint: EndpointOut
    # Shown only here: keep it, coachpay will not show it again.
    secret: str


class EndpointList(msgspec.Struct):
    data: list[EndpointOut]


class EventsPage(msgspec.Struct):
    data: list[dict[str, Any]]
    next_cursor: str


class AttemptsPage(msgspec.Struct):
    data: list[dict[str, Any]]
    next_cursor: str | None


class Replayed(msgspec.Struct):
    queued: int


class Catalogue(msgspec.Struct):
    api_version: str
    types: dict[str, str]


def _out(ep: Endpoint) -> EndpointOut:
    return EndpointOut(**endpoints.view(ep))


async def _decode(request: Request[Any, Any, Any], kind: type[Any], *, empty_ok: bool) -> Any:
    if not empty_ok and not (await request.body()).strip():
        raise InvalidInput("request body: a JSON object is needed")
    return await read_json(request, kind)  # the one decoder (invalid UTF-8 included)


def _int(value: str | None, name: str, *, lo: int, hi: int, default: int | None) -> int | None:
    if value is None:
        return default
    if not value.isdigit() or len(value) > 19 or not lo <= int(value) <= hi:
        raise InvalidInput(f"{name}: an integer from {lo} to {hi}", field=name)
    return int(value)


@get("/types", guards=ADMIN)
async def list_types() -> Catalogue:
    return Catalogue(api_version=catalog.API_VERSION, types=dict(catalog.EVENT_TYPES))


@get("/health", guards=ADMIN)
async def get_health(db: DbSession, ctx: AppCtx) -> dict[str, Any]:
    """The admin page's webhook section: endpoints failing, stalled, backlog, last 24 h."""
    return (await health.health(db, now=ctx.clock.now())).as_dict()


@get("/", guards=ADMIN)
async def list_events(
    db: DbSession,
    after: Annotated[str | None, QueryParameter(name="after", max_length=64)] = None,
    limit: Annotated[str | None, QueryParameter(name="limit", max_length=8)] = None,
    type_: Annotated[str | None, QueryParameter(name="type", max_length=2048)] = None,
) -> EventsPage:
    """Events oldest first; ``type`` is a comma-separated list."""
    size = _int(limit, "limit", lo=1, hi=MAX_PAGE, default=100) or 100
    types = [t for t in (type_ or "").split(",") if t]
    if types:
        endpoints.check_types(types)
    if after == "latest":
        return EventsPage(data=[], next_cursor=str(await events.latest(db)))
    position = events.Position.parse(after) if after else events.START
    data, last = await events.list_events(db, after=position, limit=size, types=types)
    return EventsPage(data=data, next_cursor=str(last))


@get("/{event_id:str}", guards=ADMIN)
async def get_event(db: DbSession, event_id: str = Parameter(max_length=64)) -> dict[str, Any]:
    return events.envelope_of(await events.get_event(db, event_id))


@get("/endpoints", guards=ADMIN)
async def list_endpoints(db: DbSession) -> EndpointList:
    return EndpointList([_out(ep) for ep in await endpoints.list_endpoints(db)])


@post(
    "/endpoints",
    guards=ADMIN,
    status_code=201,
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: CreateEndpoint},
)
async def create_endpoint(
    request: Request[Any, Any, Any], db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> WithSecret:
    body: CreateEndpoint = await _decode(request, CreateEndpoint, empty_ok=False)
    ep, secret = await endpoints.create_endpoint(
        db, url=body.url, event_types=body.event_types, description=body.description,
        enabled=body.enabled, ordered=body.ordered,
        guard=endpoints.Guard.from_settings(ctx.settings),
        actor_user_id=current_user.id, now=ctx.clock.now(),
    )  # fmt: skip
    return WithSecret(endpoint=_out(ep), secret=secret)


@get("/endpoints/{endpoint_id:int}", guards=ADMIN)
async def get_endpoint(
    db: DbSession, endpoint_id: int = Parameter(title="endpoint id")
) -> EndpointOut:
    return _out(await endpoints.get_endpoint(db, endpoint_id))


@patch(
    "/endpoints/{endpoint_id:int}",
    guards=ADMIN,
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: EndpointChanges},
)
async def patch_endpoint(
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    endpoint_id: int = Parameter(title="endpoint id"),
) -> EndpointOut:
    body: EndpointChanges = await _decode(request, EndpointChanges, empty_ok=False)
    changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
    ep = await endpoints.update_endpoint(
        db, endpoint_id=endpoint_id, changes=changes,
        guard=endpoints.Guard.from_settings(ctx.settings),
        actor_user_id=current_user.id, now=ctx.clock.now(),
    )  # fmt: skip
    return _out(ep)


@post(
    "/endpoints/{endpoint_id:int}/rotate-secret",
    guards=ADMIN,
    status_code=200,
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: RotateRequest},
)
async def rotate_secret(
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    endpoint_id: int = Parameter(title="endpoint id"),
) -> WithSecret:
    body: RotateRequest = await _decode(request, RotateRequest, empty_ok=True)
    ep, secret = await endpoints.rotate_secret(
        db, endpoint_id=endpoint_id, overlap_hours=body.overlap_hours,
        actor_user_id=current_user.id, now=ctx.clock.now(),
    )  # fmt: skip
    return WithSecret(endpoint=_out(ep), secret=secret)


@get("/endpoints/{endpoint_id:int}/attempts", guards=ADMIN)
async def list_attempts(
    db: DbSession,
    endpoint_id: int = Parameter(title="endpoint id"),
    limit: Annotated[str | None, QueryParameter(name="limit", max_length=8)] = None,
    cursor: Annotated[str | None, QueryParameter(name="cursor", max_length=20)] = None,
) -> AttemptsPage:
    """The delivery log, newest first."""
    size = _int(limit, "limit", lo=1, hi=MAX_PAGE, default=100) or 100
    before = _int(cursor, "cursor", lo=1, hi=endpoints.MAX_ID, default=None)
    rows = await endpoints.attempts(db, endpoint_id=endpoint_id, before=before, limit=size)
    more = len(rows) == size
    return AttemptsPage(data=rows, next_cursor=str(rows[-1]["id"]) if rows and more else None)


@post(
    "/endpoints/{endpoint_id:int}/replay",
    guards=ADMIN,
    status_code=202,
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: ReplayRequest},
)
async def replay(
    request: Request[Any, Any, Any],
    db: DbSession,
    ctx: AppCtx,
    endpoint_id: int = Parameter(title="endpoint id"),
) -> Replayed:
    body: ReplayRequest = await _decode(request, ReplayRequest, empty_ok=False)
    one = body.event_id is not msgspec.UNSET
    span = body.from_ is not msgspec.UNSET or body.to is not msgspec.UNSET
    if one == span:
        raise InvalidInput("replay: either event_id, or from and to")
    ep = await endpoints.get_endpoint(db, endpoint_id)
    now = ctx.clock.now()
    if isinstance(body.event_id, str):
        return Replayed(
            await events.replay_event(db, endpoint=ep, public_id=body.event_id, now=now)
        )
    if not isinstance(body.from_, datetime) or not isinstance(body.to, datetime):
        raise InvalidInput("replay: from and to are both needed")
    if body.from_.tzinfo is None or body.to.tzinfo is None:
        raise InvalidInput("replay: from and to need a time zone (e.g. Z)")
    return Replayed(
        await events.replay_range(db, endpoint=ep, start=body.from_, end=body.to, now=now)
    )


router = Router(
    path="/v1/admin/events",
    route_handlers=[
        list_types, get_health, list_events, get_event, list_endpoints, create_endpoint,
        get_endpoint, patch_endpoint, rotate_secret, list_attempts, replay,
    ],
)  # fmt: skip
