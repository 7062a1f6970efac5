"""Database engine, session factory and the declarative base."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {int: BigInteger, datetime: DateTime(timezone=True)}


def async_url(url: str) -> str:
    """Accept ``postgres://``/``postgresql://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql+psycopg://", "postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# A pooled connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 2.0


def create_engine(url: str, *, pool_size: int = 10, **kw: Any) -> AsyncEngine:
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        **kw,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Like ``pool_pre_ping``, but only for a connection idle in the pool for a while.

    ``pool_pre_ping`` costs a round trip per checkout, as much as the short
    statement a request or a payout step checks a connection out for. A
    connection that answered moments ago is alive; the dead ones are the long
    idle ones (a restarted server, a dropped link). One that dies under load
    fails its statement, and SQLAlchemy then recycles every connection of the
    pool. core.rawpool pings its own connections by the same rule.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "connect")
    @event.listens_for(pool, "checkin")
    def _stamp(dbapi_connection: Any, record: Any) -> None:
        record.info["coachpay_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("coachpay_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("stale pooled connection") from exc


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with factory() as session, session.begin():
        yield session


# One statement of plain psycopg SQL (``%(name)s`` parameters) and its rows, read as
# ``row.column``: core.rawpool.RawPool.fetch, or ``driver_fetch`` over SQLAlchemy.
Fetch = Callable[[str, Mapping[str, object]], Awaitable[Sequence[Any]]]


def driver_fetch(db: AsyncSession | AsyncConnection) -> Fetch:
    """``Fetch`` on the session's connection, inside its transaction: a statement
    written for core.rawpool.RawPool runs unchanged where a transaction is open."""

    async def fetch(sql: str, params: Mapping[str, object]) -> Sequence[Any]:
        conn = db if isinstance(db, AsyncConnection) else await db.connection()
        return (await conn.exec_driver_sql(sql, dict(params))).all()

    return fetch
