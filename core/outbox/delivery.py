"""Sending queued deliveries: claim, send, record, with backoff (core.outbox.loop runs it).

A pass (``deliver_pass``): fan new events out to endpoints, claim due
deliveries, send them concurrently, record the outcomes.

- **Claims** are ``FOR UPDATE SKIP LOCKED`` and set a lease
  (``next_attempt_at = now + LEASE``) and bump ``attempts`` in the claiming
  transaction, which commits before anything is sent. Several workers never
  hold the same attempt; a worker that dies after sending and before
  recording leaves the delivery to be sent again when the lease ends, with
  the same ``webhook-id``, which is why receivers deduplicate on it.
- **Ordering**: an ``ordered`` endpoint (the default) gets one delivery at a
  time, always its earliest undelivered one by event time (``occurred_at``,
  then event id): the next waits while an earlier one is retried. A receiver
  that cannot take one event holds its stream until that event succeeds or
  is given up (``RETRY_WINDOW``). Endpoints that do not need order
  (``ordered: false``) get up to ``batch`` deliveries a pass, sent at once.
- **Backoff**: exponential, keyed to how long the delivery has been failing:
  the next wait is that time (at least 30 s, at most 6 h) times a random
  factor in [0.5, 1), so each wait is 1.5 to 2 times the last; retried for
  ``RETRY_WINDOW`` (72 h) from the first attempt, then ``failed``. A replay
  starts a new window, with short waits again.
- **Disabling**: an endpoint with no success for ``DISABLE_AFTER`` (5 days)
  while attempts fail is disabled; an admin enables it again (and replays).

Times (leases, backoff, the window) follow the passed clock; the
``webhook-timestamp`` is the wall clock of the attempt (receivers check it
against theirs).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from core.outbox import catalog, signing, ssrf
from core.outbox.events import fan_out
from core.outbox.models import Outcome
from core.outbox.sender import TIMEOUT_SECONDS, AttemptResult, send
from core.settings import Settings

log = logging.getLogger(__name__)
Factory = async_sessionmaker[AsyncSession]

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=6)
RETRY_WINDOW = timedelta(hours=72)
DISABLE_AFTER = timedelta(days=5)
LEASE = timedelta(seconds=TIMEOUT_SECONDS * 3)

_CLAIM = text(
    "WITH eps AS (SELECT id, ordered FROM outbox_endpoints WHERE enabled "
    "  AND (CAST(:endpoint AS bigint) IS NULL OR id = CAST(:endpoint AS bigint))), "
    "heads AS (SELECT h.id FROM eps CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at "
    "  FROM outbox_deliveries d WHERE d.endpoint_id = eps.id AND d.status = 'pending' "
    "  ORDER BY d.occurred_at, d.event_id LIMIT 1) h "
    "  WHERE eps.ordered AND h.next_attempt_at <= :now), "
    "picked AS (SELECT d.id FROM outbox_deliveries d WHERE d.id IN (SELECT id FROM heads) "
    "  AND d.status = 'pending' AND d.next_attempt_at <= :now FOR UPDATE SKIP LOCKED), "
    "free AS (SELECT f.id FROM (SELECT id FROM eps WHERE NOT ordered) u CROSS JOIN LATERAL ("
    "  SELECT d.id FROM outbox_deliveries d WHERE d.endpoint_id = u.id AND d.status = 'pending' "
    "  AND d.next_attempt_at <= :now ORDER BY d.next_attempt_at, d.id LIMIT :limit "
    "  FOR UPDATE SKIP LOCKED) f LIMIT :limit), "
    "claimed AS (SELECT id FROM picked UNION ALL SELECT id FROM free) "
    "UPDATE outbox_deliveries d SET attempts = d.attempts + 1, next_attempt_at = :lease, "
    "  last_attempt_at = :now, retry_from = COALESCE(d.retry_from, :now) "
    "FROM claimed c, outbox_events e, outbox_endpoints ep "
    "WHERE d.id = c.id AND e.id = d.event_id AND ep.id = d.endpoint_id "
    "RETURNING d.id, d.attempts, d.retry_from, d.endpoint_id, ep.ordered, e.uid, e.type, "
    "  e.occurred_at, e.data, ep.url, ep.secret, ep.previous_secret, ep.previous_secret_expires_at"
)
# Every outcome of a pass in one statement. A failure reschedules only the
# claim it belongs to (``attempts`` matches): a later claim after a lease
# ran out owns the delivery now.
_RECORD = text(
    "WITH r AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), "
    "  CAST(:endpoints AS bigint[]), CAST(:outcomes AS text[]), CAST(:codes AS int[]), "
    "  CAST(:latency AS int[]), CAST(:errors AS text[]), CAST(:excerpts AS text[]), "
    "  CAST(:next AS timestamptz[]), CAST(:give_up AS bool[])) "
    "  AS r(id, attempt, endpoint_id, outcome, code, latency, error, excerpt, next_at, give_up)), "
    "a AS (INSERT INTO outbox_attempts (delivery_id, endpoint_id, attempt, at, outcome, "
    "  status_code, latency_ms, error, response_excerpt) "
    "  SELECT id, endpoint_id, attempt, :now, outcome, code, latency, error, excerpt FROM r), "
    "d AS (UPDATE outbox_deliveries d SET "
    "  status = CASE WHEN r.outcome = 'delivered' THEN 'delivered' "
    "    WHEN r.give_up THEN 'failed' ELSE 'pending' END, "
    "  delivered_at = CASE WHEN r.outcome = 'delivered' THEN CAST(:now AS timestamptz) END, "
    "  next_attempt_at = CASE WHEN r.outcome = 'delivered' OR r.give_up "
    "    THEN d.next_attempt_at ELSE r.next_at END, "
    "  last_status_code = r.code, last_error = r.error "
    "  FROM r WHERE d.id = r.id AND d.status = 'pending' "
    "  AND (r.outcome = 'delivered' OR d.attempts = r.attempt)) "
    "UPDATE outbox_endpoints ep SET failing_since = CASE WHEN s.ok THEN NULL "
    "  ELSE COALESCE(ep.failing_since, CAST(:now AS timestamptz)) END "
    "FROM (SELECT endpoint_id, bool_or(outcome = 'delivered') AS ok FROM r GROUP BY 1) s "
    "WHERE ep.id = s.endpoint_id AND (ep.failing_since IS NULL) <> s.ok"
)
_DISABLE = text(
    "UPDATE outbox_endpoints SET enabled = FALSE, disabled_at = :now, updated_at = :now, "
    "disabled_reason = 'failing since ' || outbox_ts(failing_since) || "
    "  ' (disabled automatically)' "
    "WHERE enabled AND failing_since <= :cutoff RETURNING id"
)


@dataclass(frozen=True)
class DeliveryConfig:
    allowed: tuple[ssrf.IPNetwork, ...] = ()
    batch: int = 100
    concurrency: int = 16
    fanout_batch: int = 1000
    timeout: float = TIMEOUT_SECONDS
    resolver: ssrf.Resolver | None = None
    # The wall clock of webhook-timestamp (the passed clock schedules).
    wall_clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.concurrency < 1 or self.fanout_batch < 1 or self.timeout <= 0:
            raise ValueError("batch, concurrency, fanout_batch and timeout must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(allowed=ssrf.allowed_networks(settings.webhook_allowed_networks))


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    attempt: int
    retry_from: datetime
    endpoint_id: int
    ordered: bool
    msg_id: str
    url: str
    body: str
    secrets: tuple[str, ...]


@dataclass
class PassResult:
    fanned_out: int = 0
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.fanned_out or self.claimed)


# An outcome already recorded (a chained ordered delivery): nothing left to record.
_RECORDED = AttemptResult(Outcome.DELIVERED, None, 0)


def backoff(failing_for: timedelta, rng: random.Random | None = None) -> timedelta:
    """The wait after a failed attempt, ``failing_for`` after the window began: each
    wait about the time failed so far, so they double (and a replay starts over)."""
    full = min(max(failing_for, BACKOFF_BASE), BACKOFF_CAP)
    return full * (0.5 + 0.5 * (rng or random).random())


def _claim_of(row: Any, now: datetime) -> Claim:
    envelope = catalog.envelope(
        uid=row.uid, type=row.type, occurred_at=row.occurred_at, data=row.data
    )
    return Claim(
        id=int(row.id),
        attempt=int(row.attempts),
        retry_from=row.retry_from,
        endpoint_id=int(row.endpoint_id),
        ordered=bool(row.ordered),
        msg_id=envelope["id"],
        url=row.url,
        body=catalog.body(envelope),
        secrets=tuple(
            signing.active_secrets(
                row.secret, row.previous_secret, row.previous_secret_expires_at, now
            )
        ),
    )


async def claim(
    db: AsyncSession, *, now: datetime, limit: int, endpoint_id: int | None = None
) -> list[Claim]:
    params = {"now": now, "limit": limit, "lease": now + LEASE, "endpoint": endpoint_id}
    rows = (await db.execute(_CLAIM, params)).all()
    return [_claim_of(r, now) for r in rows]


async def attempt(client: httpx.AsyncClient, c: Claim, config: DeliveryConfig) -> AttemptResult:
    headers = signing.headers(c.msg_id, config.wall_clock.now(), c.body, c.secrets)
    return await send(
        client, url=c.url, body=c.body, headers=headers, allowed=config.allowed,
        resolver=config.resolver, read_timeout=config.timeout,
    )  # fmt: skip


async def record(
    db: AsyncSession,
    outcomes: Sequence[tuple[Claim, AttemptResult]],
    *,
    now: datetime,
    rng: random.Random | None = None,
) -> None:
    if not outcomes:
        return
    nexts, give_up = [], []
    for c, r in outcomes:
        nexts.append(now + backoff(now - c.retry_from, rng))
        give_up.append(not r.delivered and now >= c.retry_from + RETRY_WINDOW)
    await db.execute(
        _RECORD,
        {
            "ids": [c.id for c, _ in outcomes],
            "attempts": [c.attempt for c, _ in outcomes],
            "endpoints": [c.endpoint_id for c, _ in outcomes],
            "outcomes": [r.outcome.value for _, r in outcomes],
            "codes": [r.status_code for _, r in outcomes],
            "latency": [r.latency_ms for _, r in outcomes],
            "errors": [r.error for _, r in outcomes],
            "excerpts": [r.excerpt for _, r in outcomes],
            "next": nexts,
            "give_up": give_up,
            "now": now,
        },
    )


async def disable_failing(db: AsyncSession, *, now: datetime) -> list[int]:
    rows = await db.execute(_DISABLE, {"now": now, "cutoff": now - DISABLE_AFTER})
    disabled = [int(r.id) for r in rows]
    for endpoint_id in disabled:
        log.warning("webhook endpoint %s disabled: failing for %s", endpoint_id, DISABLE_AFTER)
    return disabled


async def deliver_pass(
    factory: Factory,
    *,
    clock: Clock,
    client: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
    config: DeliveryConfig,
    rng: random.Random | None = None,
) -> PassResult:
    """One round: fan out, claim, send (concurrently), record.

    ``client`` may be a function making one: it is called only when something is
    claimed (a client costs a TLS context; an idle worker polls every second)."""
    result = PassResult()
    async with factory() as db, db.begin():
        result.fanned_out = (await fan_out(db, now=clock.now(), limit=config.fanout_batch)).events
    async with factory() as db, db.begin():
        claims = await claim(db, now=clock.now(), limit=config.batch)
    result.claimed = len(claims)
    if not claims:
        return result
    http = client if isinstance(client, httpx.AsyncClient) else client()
    gate = asyncio.Semaphore(config.concurrency)

    async def one(c: Claim) -> tuple[Claim, AttemptResult]:
        # An ordered endpoint's next event waits for this one: once it is delivered,
        # record it and claim the next in one transaction, and go on (up to ``batch``).
        for n in range(1, config.batch + 1):
            async with gate:
                r = await attempt(http, c, config)
            if not (c.ordered and r.delivered) or n == config.batch:
                return c, r  # recorded with the pass's other outcomes
            async with factory() as db, db.begin():
                await record(db, [(c, r)], now=clock.now(), rng=rng)
                following = await claim(db, now=clock.now(), limit=1, endpoint_id=c.endpoint_id)
            result.delivered += 1
            result.claimed += len(following)
            if not following:
                return c, _RECORDED
            c = following[0]
        raise AssertionError("unreachable: the loop returns")

    outcomes = [o for o in await asyncio.gather(*(one(c) for c in claims)) if o[1] is not _RECORDED]
    result.delivered += sum(1 for _, r in outcomes if r.delivered)
    result.failed = sum(1 for _, r in outcomes if not r.delivered)
    async with factory() as db, db.begin():
        now = clock.now()
        await record(db, outcomes, now=now, rng=rng)
        if result.failed:
            result.disabled = await disable_failing(db, now=now)
    return result
