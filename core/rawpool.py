"""A small psycopg pool for plain-SQL hot paths: the webhook inbox's writes and the
coach balance read.

Through SQLAlchemy's async engine a pooled checkout, one statement and the
checkin cost about 1 ms of CPU on a 2-core box (the greenlet hop, the pool's
events, the reset on return); the same statement on a psycopg connection of
its own costs a quarter of that. Only statements that are a single round trip
in autocommit belong here: anything that needs a transaction, the ORM or the
domain's locks goes through the engine.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from core.db import PING_AFTER_IDLE_SECONDS

__all__ = ["Params", "RawPool", "libpq_url"]

Params = Sequence[object] | Mapping[str, object]


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as psycopg itself takes it."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class RawPool:
    """Autocommit connections, opened on first use (a process that never runs these
    statements never connects), pinged before use only after idling a while.

    Errors are psycopg's own (``OperationalError``, ``PoolTimeout``): each caller
    knows what an unreachable database means for it.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        connections: int = 4,
        timeout: float = 10.0,
        ping: bool = True,
    ) -> None:
        self._url = libpq_url(url)
        self._name = name
        self._connections = connections
        self._timeout = timeout  # waiting for a free connection
        self._ping = ping
        self._pool: AsyncConnectionPool[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock = asyncio.Lock()
        self._idle_since: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the pool's connections belong to (None before first use)."""
        return self._loop

    async def fetch(self, sql: str, params: Params) -> list[Any]:
        """Rows as named tuples (``row.column``), as SQLAlchemy's rows read."""
        return await self._run(sql, params, namedtuple_row)

    async def fetch_tuples(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        """Rows as plain tuples (no per-statement row class: the batch writers)."""
        return await self._run(sql, params, tuple_row)

    async def _run(self, sql: str, params: Params, rows_as: Any) -> list[Any]:
        pool = await self._get_pool()
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=rows_as)
            await cur.execute(sql, params)
            rows = await cur.fetchall() if cur.description is not None else []
            self._idle_since[conn] = time.monotonic()
            return rows

    async def close(self) -> None:
        """Close the connections; a later use opens a new pool.

        Connections belong to the loop that opened them: called from another loop
        (a test client's loop already gone), the pool is dropped, not awaited.
        """
        pool, self._pool = self._pool, None
        same_loop = self._loop in (None, asyncio.get_running_loop())
        self._loop = None
        self._open_lock = asyncio.Lock()
        if pool is not None and same_loop:
            await pool.close()

    async def _get_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            async with self._open_lock:
                if self._pool is None:
                    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                        self._url,
                        min_size=1,
                        max_size=self._connections,
                        kwargs={"autocommit": True},
                        check=self._check if self._ping else None,
                        timeout=self._timeout,
                        open=False,
                        name=self._name,
                    )
                    await pool.open(wait=False)
                    self._pool = pool
                    self._loop = asyncio.get_running_loop()
        return self._pool

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # A connection that answered moments ago is alive; a round trip per use
        # would cost as much as the statement it guards.
        last = self._idle_since.get(conn)
        if last is None or time.monotonic() - last > PING_AFTER_IDLE_SECONDS:
            await conn.execute("")
