"""How webhook delivery is doing, for the admin page and for metrics.

``failing_endpoints`` is the count to alert on (a gauge: enabled endpoints
whose attempts fail with no success since ``failing_since``); ``health``
gathers every figure the admin page's section shows, one statement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.outbox.delivery import DISABLE_AFTER, LEASE

_FAILING = text("SELECT count(*) FROM outbox_endpoints WHERE enabled AND failing_since IS NOT NULL")
_HEALTH = text(
    "SELECT "
    "(SELECT count(*) FROM outbox_endpoints) AS endpoints, "
    "(SELECT count(*) FROM outbox_endpoints WHERE enabled) AS enabled, "
    "(SELECT count(*) FROM outbox_endpoints WHERE NOT enabled "
    "  AND disabled_reason LIKE 'failing since%') AS auto_disabled, "
    "(SELECT count(*) FROM outbox_endpoints WHERE enabled AND failing_since IS NOT NULL) "
    "  AS failing, "
    "(SELECT count(*) FROM outbox_deliveries WHERE status = 'pending') AS pending, "
    # Endpoints whose next delivery (an ordered one's head) has been due for longer
    # than a claim's lease: no worker is sending (none running, or all stuck).
    "(SELECT count(*) FROM outbox_endpoints ep CROSS JOIN LATERAL (SELECT CASE WHEN ep.ordered "
    "  THEN (SELECT d.next_attempt_at FROM outbox_deliveries d WHERE d.endpoint_id = ep.id "
    "    AND d.status = 'pending' ORDER BY d.occurred_at, d.event_id LIMIT 1) "
    "  ELSE (SELECT min(d.next_attempt_at) FROM outbox_deliveries d WHERE d.endpoint_id = ep.id "
    "    AND d.status = 'pending') END AS due) h "
    "  WHERE ep.enabled AND h.due < :stale) AS stalled, "
    "(SELECT min(occurred_at) FROM outbox_deliveries WHERE status = 'pending') AS oldest_pending, "
    "(SELECT count(*) FROM outbox_deliveries WHERE status = 'failed' AND last_attempt_at >= :day) "
    "  AS given_up_24h, "
    "(SELECT count(*) FROM outbox_attempts WHERE at >= :day AND outcome = 'delivered') "
    "  AS delivered_24h, "
    "(SELECT count(*) FROM outbox_attempts WHERE at >= :day AND outcome <> 'delivered') "
    "  AS failed_attempts_24h, "
    "(SELECT count(*) FROM outbox_events e, outbox_cursor c WHERE c.id = 1 "
    "  AND (e.txid, e.id) > (c.txid, c.event_id)) AS fan_out_lag"
)


@dataclass(frozen=True, slots=True)
class Health:
    endpoints: int
    enabled: int
    auto_disabled: int
    failing: int
    pending: int
    stalled: int
    oldest_pending_at: datetime | None
    given_up_24h: int
    delivered_24h: int
    failed_attempts_24h: int
    fan_out_lag: int
    disable_after_days: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def failing_endpoints(db: AsyncSession) -> int:
    return int((await db.execute(_FAILING)).scalar_one())


async def health(db: AsyncSession, *, now: datetime) -> Health:
    params = {"stale": now - LEASE, "day": now - timedelta(days=1)}
    r = (await db.execute(_HEALTH, params)).one()
    return Health(
        endpoints=int(r.endpoints),
        enabled=int(r.enabled),
        auto_disabled=int(r.auto_disabled),
        failing=int(r.failing),
        pending=int(r.pending),
        stalled=int(r.stalled),
        oldest_pending_at=r.oldest_pending,
        given_up_24h=int(r.given_up_24h),
        delivered_24h=int(r.delivered_24h),
        failed_attempts_24h=int(r.failed_attempts_24h),
        fan_out_lag=int(r.fan_out_lag),
        disable_after_days=DISABLE_AFTER.days,
    )
