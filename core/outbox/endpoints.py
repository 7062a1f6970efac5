"""Webhook endpoints: register, change, rotate the secret, read the delivery log.

Every change is audited (the secret never is). The URL is checked by
``core.outbox.ssrf`` before anything is written; the checks on the other
fields live here, whoever calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import InvalidInput
from core.outbox import catalog, signing, ssrf
from core.outbox.errors import EndpointNotFound, InvalidEventTypes
from core.outbox.models import Endpoint
from core.settings import Settings

MAX_TYPES = 64
MAX_DESCRIPTION = 500
MAX_OVERLAP_HOURS = 7 * 24
DEFAULT_OVERLAP_HOURS = 24
MAX_ID = 2**63 - 1
ADMIN_DISABLED = "disabled by an admin"
_FIELDS = ("url", "description", "event_types", "enabled", "ordered")


@dataclass(frozen=True, slots=True)
class Guard:
    """Where URLs may point: the allow list and the resolver (tests pass their own)."""

    allowed: tuple[ssrf.IPNetwork, ...] = ()
    resolver: ssrf.Resolver | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        return cls(allowed=ssrf.allowed_networks(settings.webhook_allowed_networks))


def check_types(types: object) -> list[str]:
    if not isinstance(types, list) or not 1 <= len(types) <= MAX_TYPES:
        raise InvalidEventTypes(
            f"event_types: a list of 1 to {MAX_TYPES} types", field="event_types"
        )
    if not all(isinstance(t, str) for t in types):
        raise InvalidEventTypes("event_types: a list of type names", field="event_types")
    unknown = [t for t in types if t != catalog.ALL_TYPES and t not in catalog.EVENT_TYPES]
    if unknown:
        shown = ", ".join(repr(t)[:70] for t in unknown[:5])
        raise InvalidEventTypes(
            f"event_types: unknown {shown}; see the catalogue", field="event_types"
        )
    return sorted(set(types))


def check_description(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"description: text of at most {MAX_DESCRIPTION} characters", field="description"
        )
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in value):
        raise InvalidInput("description: no control characters", field="description")
    return value


def view(ep: Endpoint) -> dict[str, Any]:
    """What the API shows and the audit log keeps: never a secret."""
    return {
        "id": ep.id,
        "url": ep.url,
        "description": ep.description,
        "event_types": list(ep.event_types),
        "enabled": ep.enabled,
        "ordered": ep.ordered,
        "failing_since": ep.failing_since,
        "disabled_at": ep.disabled_at,
        "disabled_reason": ep.disabled_reason,
        "previous_secret_expires_at": ep.previous_secret_expires_at,
        "created_at": ep.created_at,
        "updated_at": ep.updated_at,
    }


def _audit_view(ep: Endpoint) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in view(ep).items()}


async def get_endpoint(db: AsyncSession, endpoint_id: int, *, lock: bool = False) -> Endpoint:
    if not 1 <= endpoint_id <= MAX_ID:
        raise EndpointNotFound(f"no endpoint {endpoint_id}")
    stmt = select(Endpoint).where(Endpoint.id == endpoint_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    ep = (await db.execute(stmt)).scalar_one_or_none()
    if ep is None:
        raise EndpointNotFound(f"no endpoint {endpoint_id}")
    return ep


async def list_endpoints(db: AsyncSession) -> Sequence[Endpoint]:
    return (await db.execute(select(Endpoint).order_by(Endpoint.id))).scalars().all()


async def create_endpoint(
    db: AsyncSession,
    *,
    url: object,
    event_types: object = (catalog.ALL_TYPES,),
    description: object = "",
    enabled: bool = True,
    ordered: bool = True,
    guard: Guard,
    actor_user_id: int | None,
    now: datetime,
) -> tuple[Endpoint, str]:
    """The endpoint and its signing secret (shown once: only its holder has it)."""
    types = check_types(list(event_types) if isinstance(event_types, tuple) else event_types)
    text_ = check_description(description)
    target = await ssrf.check(url, allowed=guard.allowed, resolver=guard.resolver)
    secret = signing.new_secret()
    ep = Endpoint(
        url=str(target.url), description=text_, event_types=types, enabled=enabled,
        ordered=ordered, secret=secret, created_by=actor_user_id, created_at=now, updated_at=now,
    )  # fmt: skip
    db.add(ep)
    await db.flush()
    await _audit(db, "webhook_endpoint.created", ep, None, actor_user_id, now)
    return ep, secret


async def update_endpoint(
    db: AsyncSession,
    *,
    endpoint_id: int,
    changes: dict[str, Any],
    guard: Guard,
    actor_user_id: int | None,
    now: datetime,
) -> Endpoint:
    unknown = set(changes) - set(_FIELDS)
    if unknown or not changes:
        raise InvalidInput(f"change at least one of {', '.join(_FIELDS)}")
    checked: dict[str, Any] = {}
    if "url" in changes:
        target = await ssrf.check(changes["url"], allowed=guard.allowed, resolver=guard.resolver)
        checked["url"] = str(target.url)
    if "event_types" in changes:
        checked["event_types"] = check_types(changes["event_types"])
    if "description" in changes:
        checked["description"] = check_description(changes["description"])
    for flag in ("enabled", "ordered"):
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise InvalidInput(f"{flag}: true or false", field=flag)
            checked[flag] = changes[flag]
    ep = await get_endpoint(db, endpoint_id, lock=True)
    before = _audit_view(ep)
    if checked.get("enabled") is True and not ep.enabled:
        ep.failing_since = ep.disabled_at = ep.disabled_reason = None
    elif checked.get("enabled") is False and ep.enabled:
        ep.disabled_at, ep.disabled_reason = now, ADMIN_DISABLED
    for key, value in checked.items():
        setattr(ep, key, value)
    ep.updated_at = now
    await db.flush()
    await _audit(db, "webhook_endpoint.updated", ep, before, actor_user_id, now)
    return ep


async def rotate_secret(
    db: AsyncSession,
    *,
    endpoint_id: int,
    overlap_hours: int = DEFAULT_OVERLAP_HOURS,
    actor_user_id: int | None,
    now: datetime,
) -> tuple[Endpoint, str]:
    """A new secret; the current one keeps signing (second signature) for ``overlap_hours``."""
    if (
        not isinstance(overlap_hours, int)
        or isinstance(overlap_hours, bool)
        or not 0 <= overlap_hours <= MAX_OVERLAP_HOURS
    ):
        raise InvalidInput(f"overlap_hours: 0 to {MAX_OVERLAP_HOURS}", field="overlap_hours")
    ep = await get_endpoint(db, endpoint_id, lock=True)
    before = _audit_view(ep)
    secret = signing.new_secret()
    if overlap_hours:
        ep.previous_secret = ep.secret
        ep.previous_secret_expires_at = now + timedelta(hours=overlap_hours)
    else:
        ep.previous_secret = ep.previous_secret_expires_at = None
    ep.secret = secret
    ep.updated_at = now
    await db.flush()
    await _audit(db, "webhook_endpoint.secret_rotated", ep, before, actor_user_id, now)
    return ep, secret


async def _audit(
    db: AsyncSession,
    action: str,
    ep: Endpoint,
    before: dict[str, Any] | None,
    actor_user_id: int | None,
    now: datetime,
) -> None:
    await audit.record(
        db,
        actor_kind="user" if actor_user_id is not None else "system",
        actor_user_id=actor_user_id,
        action=action,
        entity_type="webhook_endpoint",
        entity_id=ep.id,
        at=now,
        before=before,
        after=_audit_view(ep),
    )


_ATTEMPTS = text(
    "SELECT a.id, a.delivery_id, a.attempt, a.at, a.outcome, a.status_code, a.latency_ms, "
    "a.error, a.response_excerpt, e.uid, e.type, d.status AS delivery_status "
    "FROM outbox_attempts a JOIN outbox_deliveries d ON d.id = a.delivery_id "
    "JOIN outbox_events e ON e.id = d.event_id "
    "WHERE a.endpoint_id = :endpoint AND a.id < :before ORDER BY a.id DESC LIMIT :limit"
)


async def attempts(
    db: AsyncSession, *, endpoint_id: int, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The delivery log, newest first (``before``: the id of the last row of a page)."""
    await get_endpoint(db, endpoint_id)
    rows = await db.execute(
        _ATTEMPTS, {"endpoint": endpoint_id, "before": before or MAX_ID, "limit": limit}
    )
    return [
        {
            "id": r.id,
            "delivery_id": r.delivery_id,
            "event_id": catalog.event_id(r.uid),
            "event_type": r.type,
            "attempt": r.attempt,
            "at": r.at,
            "outcome": r.outcome,
            "status_code": r.status_code,
            "latency_ms": r.latency_ms,
            "error": r.error,
            "response_excerpt": r.response_excerpt,
            "delivery_status": r.delivery_status,
        }
        for r in rows
    ]
