"""core.rawpool: the plain psycopg pool of the hot paths (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from core import rawpool
from core.rawpool import RawPool, libpq_url


@pytest.fixture
async def pool(commit_db_url: str) -> AsyncIterator[RawPool]:
    p = RawPool(commit_db_url, name="test-reads", connections=2, timeout=5)
    yield p
    await p.close()


def test_libpq_url_accepts_sqlalchemy_urls() -> None:
    assert libpq_url("postgresql+psycopg://u@h:1/d") == "postgresql://u@h:1/d"
    assert libpq_url("postgres://u@h/d") == "postgresql://u@h/d"
    assert libpq_url("postgresql://u@h/d") == "postgresql://u@h/d"


async def test_rows_read_by_column_name_with_named_or_positional_parameters(
    pool: RawPool,
) -> None:
    assert pool.loop is None  # nothing opened before the first statement
    [row] = await pool.fetch("SELECT %(a)s::int + 1 AS b, %(t)s::text AS t", {"a": 41, "t": "x"})
    assert (row.b, row.t) == (42, "x")
    assert await pool.fetch_tuples("SELECT %s::int, 'y'", (7,)) == [(7, "y")]
    assert pool.loop is asyncio.get_running_loop()


async def test_statements_run_in_autocommit(commit_db_url: str) -> None:
    one = RawPool(commit_db_url, name="test-one", connections=1)
    try:
        # One connection: were a transaction left open on it, both would share its id.
        [(a,)] = await one.fetch_tuples("SELECT txid_current()", ())
        [(b,)] = await one.fetch_tuples("SELECT txid_current()", ())
        assert a != b
    finally:
        await one.close()


async def test_close_then_use_opens_a_new_pool(pool: RawPool) -> None:
    [(first,)] = await pool.fetch_tuples("SELECT pg_backend_pid()", ())
    await pool.close()
    assert pool.loop is None
    [(second,)] = await pool.fetch_tuples("SELECT pg_backend_pid()", ())
    assert second != first


async def test_a_connection_killed_while_idle_is_replaced(
    pool: RawPool, commit_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rawpool, "PING_AFTER_IDLE_SECONDS", 0.0)  # every use counts as idle
    [(pid,)] = await pool.fetch_tuples("SELECT pg_backend_pid()", ())
    async with await psycopg.AsyncConnection.connect(libpq_url(commit_db_url)) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await asyncio.sleep(0.1)
    [(again,)] = await pool.fetch_tuples("SELECT pg_backend_pid()", ())
    assert again != pid  # the ping found it dead; the statement ran on a new connection


async def test_unreachable_database_fails_within_the_timeout() -> None:
    p = RawPool("postgresql://postgres@127.0.0.1:1/nowhere", name="test-away", timeout=0.5)
    try:
        with pytest.raises((PoolTimeout, psycopg.OperationalError)):
            await asyncio.wait_for(p.fetch("SELECT 1", {}), 5)
    finally:
        await p.close()
