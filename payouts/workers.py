"""The job plumbing: advisory locks, connections held by workers, bounded work queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from core.settings import Settings

T = TypeVar("T")
Factory = async_sessionmaker[AsyncSession]

LOCK_CLASS = 0x43500  # the advisory-lock namespace of coachpay's jobs


def _engine(factory: Factory) -> AsyncEngine:
    bind = factory.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the session factory must be bound to an AsyncEngine")
    return bind


class Locks:
    """Advisory locks held in one transaction on a connection of its own: they go
    away with the transaction, so a crash (or a dropped connection) can never
    leave one held. More can be taken while it is open (a payout run takes
    shards as it reaches them and keeps them to its end)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def take(self, job: int, *, shared: bool = False) -> bool:
        fn = "pg_try_advisory_xact_lock_shared" if shared else "pg_try_advisory_xact_lock"
        query = text(f"SELECT {fn}(:c, :j)")
        return bool(await self._conn.scalar(query, {"c": LOCK_CLASS, "j": job}))


@asynccontextmanager
async def job_locks(
    factory: Factory, *jobs: int, shared: tuple[int, ...] = ()
) -> AsyncIterator[Locks | None]:
    """Hold the advisory locks of ``jobs`` (and ``shared``, in shared mode) for the
    body; ``None`` if another process holds any of them (and then none is held).

    A shared lock keeps out whoever wants it exclusively, not other sharers:
    payout runs share the release job's lock, so several overlap (shard by
    shard) but none overlaps a release run.
    """
    async with _engine(factory).connect() as conn, conn.begin():
        locks = Locks(conn)
        wanted = [(job, False) for job in jobs] + [(job, True) for job in shared]
        for job, is_shared in wanted:
            if not await locks.take(job, shared=is_shared):
                await conn.rollback()  # let go of the ones taken already
                yield None
                return
        yield locks


@asynccontextmanager
async def job_lock(factory: Factory, *jobs: int) -> AsyncIterator[bool]:
    """Hold the advisory locks of ``jobs`` for the body; yields False if another
    process holds any of them (and then holds none)."""
    async with job_locks(factory, *jobs) as locks:
        yield locks is not None


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
