"""Shared fixtures: a real PostgreSQL, schema from ``alembic upgrade head``.

``db``: an AsyncSession inside a transaction rolled back at the end of the test.
``clean_engine``: for tests that need real commits (triggers, concurrency),
an engine on a second database whose tables are emptied before each test.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import create_engine
from migrations.runner import upgrade
from tests.dbutil import create_database, drop_database, server_url

warnings.filterwarnings("ignore", message="Use 'content=<...>'")


def _name(suffix: str) -> str:
    # The pid keeps concurrent test runs on one server out of each other's way.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"coachpay_test_{worker}_{os.getpid()}_{suffix}"


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return server_url()


def _migrated(server: str, suffix: str) -> Iterator[str]:
    name = _name(suffix)
    url = create_database(server, name)
    upgrade(url)
    yield url
    drop_database(server, name)


@pytest.fixture(scope="session")
def db_url(pg_server_url: str) -> Iterator[str]:
    yield from _migrated(pg_server_url, "rb")


@pytest.fixture(scope="session")
def commit_db_url(pg_server_url: str) -> Iterator[str]:
    yield from _migrated(pg_server_url, "commit")


@pytest.fixture(scope="session")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose work is rolled back at the end; ``commit()`` inside becomes a savepoint."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        try:
            yield session
        finally:
            await session.close()
            if outer.is_active:
                await outer.rollback()


async def truncate_all(eng: AsyncEngine) -> None:
    async with eng.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
        ).scalars()
        names = ", ".join(f'"{t}"' for t in tables)
        if names:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def clean_engine(commit_db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(commit_db_url, pool_size=10)
    await truncate_all(eng)
    yield eng
    await eng.dispose()


def pytest_unconfigure(config: pytest.Config) -> None:
    # pgserver logs from an atexit hook after pytest closed its capture
    # streams, which prints a "Logging error" traceback: silence it.
    import logging

    logging.getLogger("pgserver").disabled = True
