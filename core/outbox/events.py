"""Reading the outbox: the fan-out to endpoints, the event list (a cursor), replays.

Both readers walk events in ``(txid, id)`` order and only below the oldest
transaction still running (``pg_snapshot_xmin``), so an event whose
transaction commits after a later-numbered one is waited for, never skipped
(migration 0013 explains why). A position is ``"<txid>.<id>"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.outbox import catalog
from core.outbox.errors import EventNotFound, EventNotWanted, ReplayTooLarge
from core.outbox.models import Endpoint

MAX_REPLAY = 10_000
# Events (with their deliveries and attempts) are kept this long, then deleted.
RETENTION = timedelta(days=30)
PRUNE_BATCH = 5_000
_POSITION = re.compile(r"(\d{1,20})\.(\d{1,19})")
_SAFE = "pg_snapshot_xmin(pg_current_snapshot())"

_ENSURE_CURSOR = text("INSERT INTO outbox_cursor DEFAULT VALUES ON CONFLICT DO NOTHING")
# One fan-out at a time (the cursor row, SKIP LOCKED: another worker has it).
_FAN_OUT = text(
    "WITH c AS (SELECT txid, event_id FROM outbox_cursor WHERE id = 1 FOR UPDATE SKIP LOCKED), "
    "batch AS (SELECT e.id, e.txid, e.type, e.occurred_at FROM outbox_events e, c "
    f"  WHERE (e.txid, e.id) > (c.txid, c.event_id) AND e.txid < {_SAFE} "
    "  ORDER BY e.txid, e.id LIMIT :limit), "
    "ins AS (INSERT INTO outbox_deliveries (endpoint_id, event_id, occurred_at, next_attempt_at, "
    "  created_at) SELECT ep.id, b.id, b.occurred_at, :now, :now FROM batch b "
    "  JOIN outbox_endpoints ep ON ep.enabled AND (b.type = ANY(ep.event_types) "
    "    OR '*' = ANY(ep.event_types)) "
    "  ORDER BY b.txid, b.id, ep.id ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING 1), "
    "last AS (SELECT txid, id FROM batch ORDER BY txid DESC, id DESC LIMIT 1) "
    "UPDATE outbox_cursor SET txid = last.txid, event_id = last.id FROM last "
    "WHERE outbox_cursor.id = 1 "
    "RETURNING (SELECT count(*) FROM batch) AS events, (SELECT count(*) FROM ins) AS deliveries"
)
_LIST = (
    "SELECT e.id, e.uid, e.type, e.occurred_at, e.data, e.txid::text AS txid FROM outbox_events e "
    f"WHERE e.txid < {_SAFE} AND (e.txid, e.id) > (CAST(:txid AS xid8), :id) {{types}} "
    "ORDER BY e.txid, e.id LIMIT :limit"
)
_LATEST = text(
    f"SELECT txid::text AS txid, id FROM outbox_events WHERE txid < {_SAFE} "
    "ORDER BY txid DESC, id DESC LIMIT 1"
)
# A replay: new deliveries, or finished ones sent again (a pending one is on its way).
_REPLAY = text(
    "INSERT INTO outbox_deliveries (endpoint_id, event_id, occurred_at, next_attempt_at, "
    "  created_at) "
    "SELECT :endpoint, e.id, e.occurred_at, :now, :now FROM outbox_events e "
    "WHERE e.id = ANY(CAST(:ids AS bigint[])) ORDER BY e.occurred_at, e.id "
    "ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', "
    "  next_attempt_at = EXCLUDED.next_attempt_at, retry_from = NULL, delivered_at = NULL "
    "WHERE outbox_deliveries.status <> 'pending'"
)
_RANGE = text(
    "SELECT id FROM outbox_events WHERE occurred_at >= :start AND occurred_at < :end "
    "AND (type = ANY(CAST(:types AS text[])) OR '*' = ANY(CAST(:types AS text[]))) "
    "ORDER BY occurred_at, id LIMIT :limit"
)


@dataclass(frozen=True, slots=True, order=True)
class Position:
    txid: int
    id: int

    def __str__(self) -> str:
        return f"{self.txid}.{self.id}"

    @classmethod
    def parse(cls, value: str) -> Position:
        match = _POSITION.fullmatch(value)
        if match is None:
            raise InvalidInput("after: a position from next_cursor", field="after")
        txid, ident = int(match.group(1)), int(match.group(2))
        if txid >= 2**63 or ident >= 2**63:
            raise InvalidInput("after: a position from next_cursor", field="after")
        return cls(txid, ident)


START = Position(0, 0)


@dataclass(frozen=True, slots=True)
class FanOut:
    events: int
    deliveries: int


async def fan_out(db: AsyncSession, *, now: datetime, limit: int) -> FanOut:
    """Queue the next ``limit`` events for every enabled endpoint that wants them."""
    await db.execute(_ENSURE_CURSOR)  # a TRUNCATE of every table (tests) removes it
    row = (await db.execute(_FAN_OUT, {"now": now, "limit": limit})).first()
    return FanOut(int(row.events), int(row.deliveries)) if row else FanOut(0, 0)


_LAG = text(
    "SELECT count(*) FROM outbox_events e, outbox_cursor c WHERE c.id = 1 "
    "AND (e.txid, e.id) > (c.txid, c.event_id)"
)


async def fan_out_lag(db: AsyncSession) -> int:
    """Events committed but not fanned out yet: waiting for the next pass, or for an
    older transaction somewhere on the server to end (see the module docstring)."""
    return int((await db.execute(_LAG)).scalar_one())


def envelope_of(row: Any) -> dict[str, Any]:
    return catalog.envelope(uid=row.uid, type=row.type, occurred_at=row.occurred_at, data=row.data)


async def list_events(
    db: AsyncSession, *, after: Position, limit: int, types: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], Position]:
    """Events after ``after`` (oldest first) and the position to continue from."""
    where = "AND e.type = ANY(CAST(:types AS text[]))" if types else ""
    params = {"txid": str(after.txid), "id": after.id, "limit": limit, "types": list(types)}
    rows = (await db.execute(text(_LIST.format(types=where)), params)).all()
    last = Position(int(rows[-1].txid), int(rows[-1].id)) if rows else after
    return [envelope_of(r) for r in rows], last


async def latest(db: AsyncSession) -> Position:
    """Where a reader that wants only new events starts."""
    row = (await db.execute(_LATEST)).first()
    return Position(int(row.txid), int(row.id)) if row else START


async def get_event(db: AsyncSession, public_id: str) -> Any:
    uid = catalog.parse_event_id(public_id)
    row = None
    if uid is not None:
        row = (
            await db.execute(
                text("SELECT id, uid, type, occurred_at, data FROM outbox_events WHERE uid = :u"),
                {"u": uid},
            )
        ).first()
    if row is None:
        raise EventNotFound(f"no event {public_id[:60]}")
    return row


async def replay_event(
    db: AsyncSession, *, endpoint: Endpoint, public_id: str, now: datetime
) -> int:
    """Send one event to ``endpoint`` again (its ``webhook-id`` unchanged)."""
    row = await get_event(db, public_id)
    if not catalog.wants(endpoint.event_types, row.type):
        raise EventNotWanted(f"endpoint {endpoint.id} does not take {row.type} events")
    return await _replay(db, endpoint, [int(row.id)], now)


async def replay_range(
    db: AsyncSession, *, endpoint: Endpoint, start: datetime, end: datetime, now: datetime
) -> int:
    """Send again every event of ``[start, end)`` the endpoint takes; at most MAX_REPLAY."""
    if end <= start:
        raise InvalidInput("to: must be after from", field="to")
    params = {"start": start, "end": end, "types": endpoint.event_types, "limit": MAX_REPLAY + 1}
    ids = [int(r.id) for r in (await db.execute(_RANGE, params)).all()]
    if len(ids) > MAX_REPLAY:
        raise ReplayTooLarge(f"more than {MAX_REPLAY} events in that range: replay a shorter one")
    return await _replay(db, endpoint, ids, now)


async def _replay(db: AsyncSession, endpoint: Endpoint, ids: list[int], now: datetime) -> int:
    if not ids:
        return 0
    result = await db.execute(_REPLAY, {"endpoint": endpoint.id, "ids": ids, "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


# Only events the fan-out has passed: an old event not yet fanned out (held back
# by a long transaction) is still owed to its endpoints.
_PRUNE = text(
    "DELETE FROM outbox_events WHERE id IN (SELECT e.id FROM outbox_events e, outbox_cursor c "
    "WHERE c.id = 1 AND e.occurred_at < :cutoff AND (e.txid, e.id) <= (c.txid, c.event_id) "
    "ORDER BY e.occurred_at LIMIT :limit)"
)


async def prune(db: AsyncSession, *, now: datetime, limit: int = PRUNE_BATCH) -> int:
    """Delete up to ``limit`` events older than RETENTION (their deliveries and log too)."""
    result = await db.execute(_PRUNE, {"cutoff": now - RETENTION, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]
