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
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import Clock
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from payouts.errors import SimulatedCrash
from payouts.release import AccountCache, Cursor, release_due
from payouts.schedule import is_due
from payouts.service import Refusal, reserve
from payouts.transfer import CrashHook, _no_crash, process_payout

log = logging.getLogger(__name__)
T = TypeVar("T")
Factory = async_sessionmaker[AsyncSession]

LOCK_CLASS = 0x43500  # the advisory-lock namespace of coachpay's jobs
RELEASE_JOB = 1
PAYOUT_JOB = 2


@dataclass
class ReleaseResult:
    ran: bool = True
    released: int = 0
    cancelled: int = 0
    errors: int = 0


@dataclass
class PayoutResult:
    ran: bool = True
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


def _engine(factory: Factory) -> AsyncEngine:
    bind = factory.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the session factory must be bound to an AsyncEngine")
    return bind


@asynccontextmanager
async def job_lock(factory: Factory, *jobs: int) -> AsyncIterator[bool]:
    """Hold the advisory locks of ``jobs`` for the body; yields False if another process
    holds any of them (and then holds none).

    Transaction-level locks on a connection of their own: they go away with
    the transaction, so a crash (or a dropped connection) can never leave one held.
    """
    async with _engine(factory).connect() as conn, conn.begin():
        got = True
        for job in jobs:
            got = bool(
                await conn.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:c, :j)"), {"c": LOCK_CLASS, "j": job}
                )
            )
            if not got:
                await conn.rollback()  # let go of the ones taken already
                break
        yield got


def _concurrency(settings: Settings, wanted: int | None) -> int:
    # Each worker holds one pooled connection (plus one for the job lock).
    return max(1, wanted if wanted is not None else min(8, settings.db_pool_size - 1))


@asynccontextmanager
async def _held(factory: Factory) -> AsyncIterator[Factory]:
    """A session factory whose sessions all run on ONE connection, held for a worker's life.

    A worker does two transactions per payout; taking a pooled connection for
    each cost a pre-ping and a reset (ROLLBACK) round trip apiece. The
    transactions themselves are unchanged: each session begins and commits
    (or rolls back) its own. A connection broken mid-way is invalidated by
    SQLAlchemy and replaced on next use, after the failed transaction's rollback.
    """
    async with _engine(factory).connect() as conn:
        kw = {k: v for k, v in factory.kw.items() if k != "bind"}
        yield async_sessionmaker(conn, class_=factory.class_, **kw)


async def _pool(
    factory: Factory,
    items: AsyncIterator[T],
    fn: Callable[[Factory, T], Awaitable[None]],
    concurrency: int,
) -> None:
    """Run ``fn`` over ``items`` with ``concurrency`` workers and a bounded queue;
    each worker passes ``fn`` a factory on the connection it holds.

    ``fn`` handles its own errors; anything that escapes (a SimulatedCrash)
    cancels the rest and is re-raised as itself, like a dying process.
    """
    queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        async with _held(factory) as held:
            while (item := await queue.get()) is not None:
                await fn(held, item)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
            async for item in items:
                await queue.put(item)
            for _ in range(concurrency):
                await queue.put(None)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


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
        cursor: list[Cursor] = []

        async def worker() -> None:
            while True:
                local = dict(cache)  # cached only once committed: ids of rolled back rows lie
                try:
                    async with factory() as db, db.begin():
                        after = cursor[0] if cursor else None
                        batch = await release_due(
                            db, now=now, limit=limit, cache=local, after=after
                        )
                        if batch.last is not None and (not cursor or batch.last > cursor[0]):
                            cursor[:] = [batch.last]
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
    "ORDER BY id LIMIT :limit"
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
    "JOIN connect_accounts ca ON ca.coach_id = a.owner_id AND ca.payouts_enabled "
    "WHERE a.owner_type = 'coach' AND a.kind = 'available' AND a.id > :after "
    "AND NOT EXISTS (SELECT 1 FROM payouts po WHERE po.coach_id = a.owner_id "
    "  AND po.currency = a.currency AND po.status IN ('pending', 'waiting_funds')) "
    "ORDER BY a.id LIMIT :limit"
)


async def _pages(
    factory: Factory, query: Any, params: dict[str, Any], limit: int
) -> AsyncIterator[Any]:
    after = 0
    while True:
        async with factory() as db:
            rows = (await db.execute(query, {**params, "after": after, "limit": limit})).all()
        for row in rows:
            yield row
        if len(rows) < limit:
            return
        after = int(rows[-1][0])


async def run_payout_job(
    factory: Factory,
    *,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    concurrency: int | None = None,
    hook: CrashHook = _no_crash,
) -> PayoutResult:
    """Retry the open payouts that are due, then create and send new ones.

    Holds the release job's lock too: a payout run never overlaps a release
    run anywhere, so it sees every release of the moment and pays a coach one
    transfer, not one per release batch that happened to be committed.
    """
    async with job_lock(factory, PAYOUT_JOB, RELEASE_JOB) as got:
        if not got:
            return PayoutResult(ran=False)
        result = PayoutResult()
        now = clock.now()
        limit = settings.job_batch_size
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

        await _pool(
            factory,
            _pages(factory, _DUE_PAYOUTS, {"now": now}, limit),
            retry,
            _workers(settings, concurrency),
        )

        async def create(held: Factory, row: Any) -> None:
            try:
                async with held() as db, db.begin():
                    made = await reserve(db, coach_id=row.coach_id, currency=row.currency, now=now)
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

        candidates = _eligible(_pages(factory, _CANDIDATES, {}, limit), now)
        await _pool(factory, candidates, create, _workers(settings, concurrency))
    return result


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
    "CycleResult",
    "PayoutResult",
    "ReleaseResult",
    "SimulatedCrash",
    "job_lock",
    "run_cycle",
    "run_payout_job",
    "run_release_job",
]
