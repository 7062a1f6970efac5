"""The release and payout jobs, and one cycle of both (``coachpay payouts run``).

Safe in many processes at once (serve, workers, a manual run): each job
takes a Postgres advisory lock and skips the run if another process holds it,
and every row it works on is claimed with ``FOR UPDATE SKIP LOCKED`` (so even
two runs that both got in could not pay twice; the partial unique index on
open payouts and the idempotency keys are further walls). Work is read in
bounded batches (``settings.job_batch_size``) and fed to a few concurrent
workers through a bounded queue, so memory stays flat and one slow coach
(a slow Stripe answer) never holds up the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text

from connect.profile import BACKOFF_OVER_SQL
from core.clock import Clock
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from payouts.errors import SimulatedCrash
from payouts.hotpath import reserve_due
from payouts.models import Payout
from payouts.release import AccountCache, Cursor, release_due
from payouts.schedule import is_due
from payouts.service import Refusal, reserve
from payouts.transfer import CrashHook, _no_crash, process_payout
from payouts.workers import (
    LOCK_CLASS,
    Factory,
    Locks,
    _concurrency,
    _pages,
    _pool,
    job_lock,
    job_locks,
)

log = logging.getLogger(__name__)
RELEASE_JOB = 1
PAYOUT_JOB = 2  # no longer taken: payout runs lock shards (kept: the id stays reserved)
# Coaches are split into shards (coach_id % SHARDS), each an advisory lock a
# payout run takes as it reaches it: several processes share one run's work,
# none pays a coach another holds. Changing SHARDS while runs are going on is
# safe too (the row claims below the locks never relied on them).
SHARDS = 8
SHARD_LOCK_BASE = 0x100


@dataclass
class ReleaseResult:
    ran: bool = True
    released: int = 0
    cancelled: int = 0
    errors: int = 0


@dataclass
class PayoutResult:
    ran: bool = True
    shards: int = 0  # shards this run took (the others were another process's)
    created: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    not_created: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    @property
    def paid(self) -> int:
        return self.outcomes["paid"]


@dataclass
class CycleResult:
    release: ReleaseResult
    payouts: PayoutResult


async def run_release_job(
    factory: Factory, *, clock: Clock, settings: Settings, concurrency: int | None = None
) -> ReleaseResult:
    """Release every earning due now, batch by batch, one commit per batch."""
    async with job_lock(factory, RELEASE_JOB) as got:
        if not got:
            return ReleaseResult(ran=False)
        result = ReleaseResult()
        now = clock.now()
        limit = settings.job_batch_size
        cache: AccountCache = {}
        # One cursor shared by the workers: each claims past the furthest row
        # claimed so far. Rows skipped because another process held them are
        # picked up by the next run.
        cursor: Cursor | None = None

        async def worker() -> None:
            nonlocal cursor
            while True:
                local = dict(cache)  # cached only once committed: ids of rolled back rows lie
                try:
                    async with factory() as db, db.begin():
                        batch = await release_due(
                            db, now=now, limit=limit, cache=local, after=cursor
                        )
                        if batch.last is not None and (cursor is None or batch.last > cursor):
                            cursor = batch.last
                except Exception:
                    log.exception("release batch failed; its earnings are retried next run")
                    result.errors += 1
                    return
                cache.update(local)
                result.released += batch.released
                result.cancelled += batch.cancelled
                if batch.claimed < limit:
                    return

        await asyncio.gather(
            *(worker() for _ in range(min(_concurrency(settings, concurrency), 4)))
        )
    if result.released or result.cancelled:
        log.info("released %s earnings (%s cancelled)", result.released, result.cancelled)
    return result


_DUE_PAYOUTS = text(
    "SELECT id FROM payouts WHERE status IN ('pending', 'waiting_funds') "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= :now) AND id > :after "
    "AND coach_id % :shards = :shard ORDER BY id LIMIT :limit"
)
# Coaches who may be paid: keyset over their available accounts. The amount,
# schedule and minimum are checked again under the balance lock in reserve().
_CANDIDATES = text(
    "SELECT a.id, a.owner_id AS coach_id, a.currency, p.payout_schedule, "
    "COALESCE((p.minimum_payout ->> a.currency)::bigint, 0) AS minimum, "
    "-(SELECT COALESCE(sum(s.balance), 0) FROM ledger_balance_slots s "
    "  WHERE s.account_id = a.id) AS owed, "
    "(SELECT max(po.created_at) FROM payouts po WHERE po.coach_id = a.owner_id "
    "  AND po.currency = a.currency AND po.status <> 'failed') AS last_payout_at "
    "FROM ledger_accounts a "
    "JOIN coach_profiles p ON p.user_id = a.owner_id AND NOT p.payouts_paused "
    f"  AND {BACKOFF_OVER_SQL} "
    "JOIN connect_accounts ca ON ca.coach_id = a.owner_id AND ca.payouts_enabled "
    "WHERE a.owner_type = 'coach' AND a.kind = 'available' AND a.id > :after "
    "AND a.owner_id % :shards = :shard "
    "AND NOT EXISTS (SELECT 1 FROM payouts po WHERE po.coach_id = a.owner_id "
    "  AND po.currency = a.currency AND po.status IN ('pending', 'waiting_funds')) "
    "ORDER BY a.id LIMIT :limit"
)


async def run_payout_job(
    factory: Factory,
    *,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    concurrency: int | None = None,
    hook: CrashHook = _no_crash,
) -> PayoutResult:
    """Per shard of coaches: retry the open payouts that are due, then create and send
    new ones.

    Holds the release job's lock in shared mode: a payout run never overlaps a
    release run anywhere, so it sees every release of the moment and pays a
    coach one transfer, not one per release batch that happened to be
    committed; other payout runs may go on at once, each on the shards it took.
    """
    async with job_locks(factory, shared=(RELEASE_JOB,)) as locks:
        if locks is None:
            return PayoutResult(ran=False)
        result = PayoutResult()
        now = clock.now()
        kw: dict[str, Any] = {"gateway": gateway, "clock": clock, "settings": settings}

        async def send(held: Factory, payout_id: int, *, only_due: bool = True) -> None:
            try:
                outcome = await process_payout(held, payout_id, hook=hook, only_due=only_due, **kw)
            except Exception:
                log.exception("payout %s: processing failed; retried next run", payout_id)
                result.errors += 1
                return
            result.outcomes[outcome] += 1

        async def retry(held: Factory, row: Any) -> None:
            await send(held, int(row.id))

        async def create(held: Factory, row: Any) -> None:
            try:
                async with held() as db, db.begin():
                    coach, cur = int(row.coach_id), str(row.currency)
                    made: Payout | Refusal | None = await reserve_due(
                        db, coach_id=coach, currency=cur, schedule=row.payout_schedule, now=now
                    )
                    if made is None:  # declined: the exact checks, and the reason
                        made = await reserve(db, coach_id=coach, currency=cur, now=now)
                    if isinstance(made, Refusal):
                        result.not_created[made.reason] += 1
                        return
                    hook("during_reserve")
            except Exception:
                log.exception("payout for coach %s %s: reserve failed", row.coach_id, row.currency)
                result.errors += 1
                return
            result.created += 1
            hook("after_reserve")
            await send(held, made.id, only_due=False)

        work = _shard_work(factory, locks, result, now, settings.job_batch_size, retry, create)
        # One pool for every shard: a slow coach holds one worker, never the next shard.
        await _pool(factory, work, _call, _workers(settings, concurrency))
    result.ran = result.shards > 0
    return result


Step = Callable[[Factory, Any], Awaitable[None]]


async def _call(held: Factory, item: tuple[Step, Any]) -> None:
    await item[0](held, item[1])


async def _shard_work(
    factory: Factory,
    locks: Locks,
    result: PayoutResult,
    now: datetime,
    limit: int,
    retry: Step,
    create: Step,
) -> AsyncIterator[tuple[Step, Any]]:
    """The run's work, shard by shard, for the shards this run can lock (kept to its
    end). Started at a shard of the process id so processes starting together
    spread out, while one process always goes in the same order (a seeded chaos
    run replays); read as the workers take it (bounded queue), so a busy process
    takes fewer."""
    first = os.getpid() % SHARDS
    for i in range(SHARDS):
        shard = (first + i) % SHARDS
        if not await locks.take(SHARD_LOCK_BASE + shard):
            continue  # another run is paying these coaches
        result.shards += 1
        params = {"shards": SHARDS, "shard": shard, "now": now}
        async for row in _pages(factory, _DUE_PAYOUTS, params, limit):
            yield retry, row
        async for row in _eligible(_pages(factory, _CANDIDATES, params, limit), now):
            yield create, row


def _workers(settings: Settings, wanted: int | None) -> int:
    return _concurrency(settings, wanted)


async def _eligible(rows: AsyncIterator[Any], now: datetime) -> AsyncIterator[Any]:
    """Cheap pre-filter; reserve() re-checks under the lock."""
    async for row in rows:
        owed = int(row.owed)
        if (
            owed > 0
            and owed >= row.minimum
            and is_due(row.payout_schedule, last_payout_at=row.last_payout_at, now=now)
        ):
            yield row


async def run_cycle(
    factory: Factory,
    *,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    concurrency: int | None = None,
    hook: CrashHook = _no_crash,
) -> CycleResult:
    """Release what is due, then pay who is due: ``coachpay payouts run``."""
    release = await run_release_job(
        factory, clock=clock, settings=settings, concurrency=concurrency
    )
    payouts = await run_payout_job(
        factory, gateway=gateway, clock=clock, settings=settings, concurrency=concurrency, hook=hook
    )
    return CycleResult(release=release, payouts=payouts)


__all__ = [
    "LOCK_CLASS",
    "SHARDS",
    "CycleResult",
    "PayoutResult",
    "ReleaseResult",
    "SimulatedCrash",
    "job_lock",
    "run_cycle",
    "run_payout_job",
    "run_release_job",
]
