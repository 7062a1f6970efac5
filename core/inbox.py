"""The Stripe webhook inbox: store every event once, then act on it exactly once.

Receiving and processing are split: the endpoint verifies and stores the
event (one INSERT ... ON CONFLICT DO NOTHING on the event id) and answers
Stripe at once; processing claims the row (FOR UPDATE SKIP LOCKED) and runs
the handlers in the SAME transaction that marks the row processed, so an
effect and its mark commit together or not at all. A failure rolls the
effect back and schedules a retry with backoff; ``process_due`` (a job) picks
up what is owed, so a crash between receive and process loses nothing. An
event that keeps failing is parked (core.inbox_failures has the rule) until
an admin replays it (core.inbox_admin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import msgspec
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.inbox_failures import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    MAX_HANDLER_FAILURES,
    backoff,
    record_failure,
)
from core.inbox_models import (
    DONE_SET,
    FAILED,
    IGNORED,
    OWED,
    PARKED,
    PENDING,
    PROCESSED,
    STORED_COLUMNS,
    WebhookEvent,
    unpark_values,
)
from core.log_context import bind_event_context
from core.stripe_types import StripeEvent

if TYPE_CHECKING:
    from core.settings import Settings
    from core.stripe_gateway import StripeGateway

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_HANDLER_FAILURES",
    "HandlerContext",
    "HandlerRegistry",
    "WebhookEvent",
    "WebhookHandler",
    "backoff",
    "claim_due",
    "drain",
    "process_due",
    "process_event",
    "store_event",
]

log = logging.getLogger(__name__)

Endpoint = Literal["platform", "connect"]
Outcome = Literal["processed", "failed", "parked", "ignored", "skipped"]

# With in-request (background) processing the retry job is a safety net: a
# new event becomes due only after this grace period. With processing "off"
# the receiver stores events due at once (first_attempt_delay=0).
FIRST_RETRY_DELAY = timedelta(seconds=60)
# How long an event claimed by ``claim_due`` is kept from other workers.
CLAIM_LEASE = timedelta(minutes=5)
# A handler still running after COACHPAY_WEBHOOK_HANDLER_TIMEOUT_SECONDS fails
# (transient, see core.inbox_failures): one that hangs on an event must not hold
# its batch, and so the whole drain, forever. Shorter than the lease (the
# setting's bound), so no second worker is handed the event.
_encode = msgspec.json.encode

# The hot path in plain SQL, built once: no ORM statement to build, compile and
# cache-key per event, no ORM object per row. The payload goes in as the text
# received (CAST to jsonb), not re-encoded from a dict.
_STORE = text(
    f"INSERT INTO webhook_events ({STORED_COLUMNS})"
    f" VALUES (:event_id, :endpoint, :type, :account, :livemode, CAST(:payload AS jsonb),"
    f" :now, '{PENDING}', 0, :due)"
    " ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id"
)
_CLAIM = text(
    f"SELECT type, payload FROM webhook_events WHERE id = :id AND {OWED} FOR UPDATE SKIP LOCKED"
)
_CLAIM_TYPE = text(
    f"SELECT type FROM webhook_events WHERE id = :id AND {OWED} FOR UPDATE SKIP LOCKED"
)
_MARK_DONE = text(
    f"UPDATE webhook_events SET status = :status, processed_at = :now, {DONE_SET} WHERE id = :id"
)
_UNLEASE = text(f"UPDATE webhook_events SET next_attempt_at = :now WHERE id = ANY(:ids) AND {OWED}")
_CLAIM_DUE = text(
    "UPDATE webhook_events SET next_attempt_at = :until WHERE id IN ("
    f" SELECT id FROM webhook_events WHERE {OWED} AND next_attempt_at <= :now"
    " ORDER BY next_attempt_at, id LIMIT :batch FOR UPDATE SKIP LOCKED) RETURNING id, type"
)
# Events no handler takes, marked in one statement (what process_event does for each:
# claim it unless locked elsewhere, mark it ignored).
_IGNORE_MANY = text(
    f"UPDATE webhook_events SET status = '{IGNORED}', processed_at = :now, {DONE_SET}"
    " WHERE id IN ("
    f" SELECT id FROM webhook_events WHERE id = ANY(:ids) AND {OWED} FOR UPDATE SKIP LOCKED)"
    " RETURNING id"
)


@dataclass(frozen=True, slots=True)
class HandlerContext:
    gateway: StripeGateway
    clock: Clock
    settings: Settings


WebhookHandler = Callable[[AsyncSession, StripeEvent, HandlerContext], Awaitable[None]]


class HandlerRegistry:
    """Event type -> handlers, run in registration order in one transaction.

    Handlers must be idempotent (an event may arrive twice under two ids,
    or out of order) and must not commit: the inbox commits.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[WebhookHandler]] = {}

    def register(self, event_type: str, handler: WebhookHandler) -> None:
        handlers = self._handlers.setdefault(event_type, [])
        if handler not in handlers:
            handlers.append(handler)

    def handlers_for(self, event_type: str) -> tuple[WebhookHandler, ...]:
        return tuple(self._handlers.get(event_type, ()))

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._handlers

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._handlers)


async def store_event(
    db: AsyncSession,
    *,
    event: StripeEvent,
    endpoint: Endpoint,
    now: datetime,
    payload: str | None = None,
    first_attempt_delay: timedelta = FIRST_RETRY_DELAY,
) -> int | None:
    """Store ``event`` unless its id is already there: the new row's id, ``None`` for a repeat.

    ``payload``: the body as received (JSON text), stored as is instead of
    re-encoding ``event.raw``. ``first_attempt_delay``: when the retry job may
    take it (0 when no web process processes it, see ``claim_due``).
    """
    params = {
        "event_id": event.id,
        "endpoint": endpoint,
        "type": event.type,
        "account": event.account,
        "livemode": event.livemode,
        "payload": payload if payload is not None else _encode(event.raw).decode(),
        "now": now,
        "due": now + first_attempt_delay,
    }
    new_id: int | None = (await db.execute(_STORE, params)).scalar_one_or_none()
    return new_id


async def event_row_id(db: AsyncSession, stripe_event_id: str) -> int | None:
    stmt = select(WebhookEvent.id).where(WebhookEvent.stripe_event_id == stripe_event_id)
    return (await db.execute(stmt)).scalar_one_or_none()


async def process_event(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    event_row_id: int,
    *,
    event: StripeEvent | None = None,
) -> Outcome:
    """Run the handlers of one stored event; 'skipped' when it is done or being done elsewhere.

    ``event``: the row's event when the caller has it already (it just stored
    it), so its payload is not read back and decoded again.
    """
    error: BaseException | None = None
    try:
        async with factory() as db, db.begin():
            claim = _CLAIM_TYPE if event is not None else _CLAIM
            row = (await db.execute(claim, {"id": event_row_id})).one_or_none()
            if row is None:
                return "skipped"
            if event is None:
                event = StripeEvent.from_dict(row.payload)
            handlers = registry.handlers_for(row.type)
            bind_event_context(event)
            async with asyncio.timeout(ctx.settings.webhook_handler_timeout_seconds):
                for handler in handlers:
                    await handler(db, event, ctx)
            status = PROCESSED if handlers else IGNORED
            await db.execute(
                _MARK_DONE, {"id": event_row_id, "status": status, "now": ctx.clock.now()}
            )
            return "processed" if handlers else "ignored"
    except Exception as exc:
        # The transaction (effects and claim) is rolled back by now.
        error = exc
    try:
        parked = await record_failure(
            factory, event_row_id, error, now=ctx.clock.now(), settings=ctx.settings
        )
    except Exception:
        # The database is away too: the lease makes the event due again later.
        log.exception("recording the failure of webhook event %s failed", event_row_id)
        return "failed"
    return "parked" if parked else "failed"


async def process_due(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    *,
    now: datetime,
    batch: int = 100,
    concurrency: int = 4,
) -> int:
    """Process up to ``batch`` events owed work (pending or failed, due by ``now``).

    Returns how many were processed or ignored. See ``claim_due``.
    """
    return (await _process_batch(factory, registry, ctx, now, batch, concurrency))[1]


async def claim_due(
    factory: async_sessionmaker[AsyncSession], *, now: datetime, batch: int
) -> list[int]:
    """Lease up to ``batch`` due events to this process (oldest due first).

    FOR UPDATE SKIP LOCKED: rows another worker is leasing or processing are
    passed over, and a leased row is not due again for ``CLAIM_LEASE``, so
    several workers share the backlog instead of colliding on it. The lease
    only decides who tries; each event is still processed by ``process_event``
    (claim, effects and mark in one transaction), so exactly-once does not
    rest on it. A worker that dies leaves its lease to expire.
    """
    return sorted(row_id for row_id, _ in await _claim_due_typed(factory, now=now, batch=batch))


async def _claim_due_typed(
    factory: async_sessionmaker[AsyncSession], *, now: datetime, batch: int
) -> list[tuple[int, str]]:
    async with factory() as db, db.begin():
        params = {"now": now, "batch": batch, "until": now + CLAIM_LEASE}
        rows = (await db.execute(_CLAIM_DUE, params)).all()
    return sorted((int(r[0]), str(r[1])) for r in rows)


async def _process_batch(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    now: datetime,
    batch: int,
    concurrency: int,
) -> tuple[int, int]:
    """(claimed, processed or ignored): events run ``concurrency`` at a time (each in
    its own transaction; handlers take events in any order, see HandlerRegistry).
    Events no handler takes are marked ignored together, in one statement."""
    claimed = await _claim_due_typed(factory, now=now, batch=batch)
    unhandled = [i for i, t in claimed if t not in registry]
    ids = [i for i, t in claimed if t in registry]
    ignored: set[int] = set()
    if unhandled:
        async with factory() as db, db.begin():
            params = {"ids": unhandled, "now": ctx.clock.now()}
            ignored = {int(r) for r in (await db.execute(_IGNORE_MANY, params)).scalars()}
    gate = asyncio.Semaphore(max(concurrency, 1))

    async def one(row_id: int) -> Outcome:
        async with gate:
            return await process_event(factory, registry, ctx, row_id)

    results = await asyncio.gather(*(one(i) for i in ids))
    # "skipped": the row was locked when we came to it, e.g. by another
    # worker's claim statement that read it as due just before our lease
    # committed. Hand the lease back, or the event would wait out CLAIM_LEASE.
    skipped = [i for i, r in zip(ids, results, strict=True) if r == "skipped"]
    skipped += [i for i in unhandled if i not in ignored]
    if skipped:
        async with factory() as db, db.begin():
            await db.execute(_UNLEASE, {"ids": skipped, "now": now})
    return len(claimed), len(ignored) + sum(r in ("processed", "ignored") for r in results)


async def drain(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    *,
    stop: asyncio.Event,
    batch: int = 100,
    concurrency: int = 4,
    idle_seconds: float = 0.25,
) -> None:
    """Process the inbox until ``stop``: a full batch is followed at once by the next,
    otherwise it polls every ``idle_seconds`` (one indexed query).

    For a web process that only stores (webhook processing "off"): new events
    are due at once and are handled here within about ``idle_seconds``.
    """
    while not stop.is_set():
        claimed = 0
        try:
            claimed, _ = await _process_batch(
                factory, registry, ctx, ctx.clock.now(), batch, concurrency
            )
        except Exception:  # the database may be away for a moment: try again later
            log.exception("inbox drain pass failed")
        if claimed < batch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle_seconds)


async def reschedule(db: AsyncSession, event_row_id: int, *, at: datetime) -> None:
    """Make a failed or parked event due again at ``at`` (an operator's retry, unaudited:
    ``core.inbox_admin.replay`` is the admin's)."""
    await db.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_row_id, WebhookEvent.status.in_((PENDING, FAILED)))
        .values(next_attempt_at=at)
    )
    await db.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_row_id, WebhookEvent.status == PARKED)
        .values(**unpark_values(at))
    )
