"""The receive side of the webhook inbox: many deliveries, few commits (group commit).

Each delivery waits for its own row to be durably committed before it is
answered, as before; what changes is that deliveries arriving together share
one statement and so one commit (one WAL flush): ``InboxReceiver.store``
queues the event, a batch of everything queued is written as one
``INSERT ... VALUES (...), (...) ON CONFLICT (stripe_event_id) DO NOTHING
RETURNING`` in autocommit (a single statement: all of its rows or none), and
each caller gets its row id, or ``None`` when the event id was already there.
Nothing waits for a batch to fill: a delivery that finds a connection free is
written at once, and the batches grow only while the earlier ones are at the
database, which is exactly when sharing a commit pays. The same event id
twice in one batch: the first is the one stored, the others are answered as
duplicates once it is committed.

A batch PostgreSQL refuses for a row's content (say a ``\\u0000`` jsonb
cannot hold) is retried row by row, so one hostile event fails alone
(``WebhookPayloadInvalid``); a database that is away fails the whole batch
with ``InboxUnavailable`` (answer 503: Stripe retries), nothing written.

Statements go through a small psycopg pool of their own (plain SQL, no ORM),
separate from the SQLAlchemy engine the handlers use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import PoolTimeout

from core.inbox_models import DONE_SET, IGNORED, OWED, PENDING, STORED_COLUMNS
from core.rawpool import RawPool
from core.stripe_webhooks import WebhookPayloadInvalid

__all__ = ["Batcher", "InboxReceiver", "InboxUnavailable", "Receipt"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


# One row of VALUES per event. Not unnest() over arrays: psycopg builds a text
# array in Python, escaping every JSON body with a regex (two thirds of the
# server's CPU under load); plain parameters are dumped in C. The statement
# for each batch size is built once (and prepared by psycopg after 5 uses).
_ROW = f"(%s, %s, %s, %s, %s, %s::jsonb, %s, '{PENDING}', 0, %s)"


@functools.lru_cache(maxsize=1024)
def _insert_sql(rows: int) -> str:
    return (
        f"INSERT INTO webhook_events ({STORED_COLUMNS}) VALUES "
        + ", ".join([_ROW] * rows)
        + " ON CONFLICT (stripe_event_id) DO NOTHING RETURNING stripe_event_id, id"
    )


# What process_event does to an event no handler takes, for many rows at once (as
# core.inbox._IGNORE_MANY, but waiting for a row another worker holds rather than
# skipping it): only rows still owed work change.
_IGNORE = (
    f"UPDATE webhook_events SET status = '{IGNORED}', processed_at = %s, {DONE_SET}"
    f" WHERE id = ANY(%s) AND {OWED} RETURNING id"
)


class InboxUnavailable(RuntimeError):
    """The inbox could not be written (database away, pool exhausted): nothing was
    stored by the failed statement; the sender should retry (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """One verified delivery, as the inbox stores it."""

    event_id: str
    endpoint: str
    type: str
    account: str | None
    livemode: bool
    payload: str  # the body as received; PostgreSQL parses it into jsonb
    received_at: datetime
    due: datetime  # next_attempt_at: when the retry job or worker may take it


class Batcher(Generic[T, R]):
    """Run concurrent ``submit`` calls in batches through ``flush``.

    ``flush(items)`` returns one result (or exception) per item, in order. At
    most ``concurrency`` flushes run at once; whatever queues meanwhile goes in
    the next one (up to ``max_batch`` items). A caller that is cancelled does
    not cancel its item: it is written with the rest.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 500,
        concurrency: int = 2,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._slots = asyncio.Semaphore(concurrency)
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._slots.acquire()
            # Taken after the slot is ours: all that queued while we waited goes too.
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            task = asyncio.create_task(self._one(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _one(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            try:
                results: Sequence[R | BaseException] = await self._flush([i for i, _ in batch])
            except Exception as exc:  # flush failed as a whole: every caller learns it
                results = [exc] * len(batch)
            finally:
                self._slots.release()
        except BaseException:  # cancelled mid-flush: no caller may wait forever
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():  # the caller went away
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def aclose(self) -> None:
        """Finish what was submitted, then stop."""
        while self._queue or self._flushing:
            if self._flushing:
                await asyncio.gather(*self._flushing, return_exceptions=True)
            else:
                await asyncio.sleep(0.001)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None


class InboxReceiver:
    """Stores verified deliveries (``store``) and marks unhandled ones ignored
    (``ignore``), both group-committed. The pool opens on first use, so a
    process that never receives (``coachpay worker``) never connects."""

    def __init__(
        self,
        url: str,
        *,
        connections: int = 4,
        max_batch: int = 500,
        ping: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._pool = RawPool(
            url, name="coachpay-inbox", connections=connections, timeout=timeout, ping=ping
        )
        self._connections = connections
        self._max_batch = max_batch
        self._fresh()

    def _fresh(self) -> None:
        # asyncio primitives bind to the loop that first waits on them: new ones after close.
        writers = max(1, self._connections - 1)
        self._stores: Batcher[Receipt, int | None] = Batcher(
            self._store_batch, max_batch=self._max_batch, concurrency=writers
        )
        self._ignores: Batcher[tuple[int, datetime], bool] = Batcher(
            self._ignore_batch, max_batch=self._max_batch, concurrency=1
        )

    async def store(self, receipt: Receipt) -> int | None:
        """The new row's id once committed; ``None`` if the event id was stored before.

        Raises ``InboxUnavailable`` or ``WebhookPayloadInvalid``; then nothing was stored.
        """
        return await self._stores.submit(receipt)

    async def ignore(self, row_id: int, now: datetime) -> bool:
        """Mark a stored event that no handler takes as ignored: False if it was done
        meanwhile (by the retry job). Errors leave it pending for that job."""
        return await self._ignores.submit((row_id, now))

    async def close(self) -> None:
        """Finish what was submitted and close the pool; a later use opens a new one.

        Called where the receiver ran (the app's shutdown): a test client serves
        the app on a loop of its own, which is gone by the time the runtime stops.
        """
        if self._pool.loop in (None, asyncio.get_running_loop()):
            await self._stores.aclose()
            await self._ignores.aclose()
        await self._pool.close()
        self._fresh()

    # ---- internals -------------------------------------------------------------------------

    async def _execute(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return await self._pool.fetch_tuples(sql, params)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise InboxUnavailable(f"webhook inbox unavailable: {_first_line(exc)}") from exc

    async def _insert(self, batch: Sequence[Receipt]) -> dict[str, int]:
        params: list[object] = []
        for r in batch:
            params += (r.event_id, r.endpoint, r.type, r.account, r.livemode, r.payload,
                       r.received_at, r.due)  # fmt: skip
        rows = await self._execute(_insert_sql(len(batch)), params)
        return {str(event_id): int(row_id) for event_id, row_id in rows}

    async def _store_batch(self, batch: list[Receipt]) -> list[int | BaseException | None]:
        first: dict[str, Receipt] = {}
        for r in batch:
            first.setdefault(r.event_id, r)  # a repeat inside the batch: not sent twice
        # In event-id order: two batches inserting the same ids at once then lock
        # them in the same order, so they cannot deadlock.
        unique = sorted(first.values(), key=lambda r: r.event_id)
        outcome: dict[str, int | BaseException] = {}
        try:
            outcome.update(await self._insert(unique))
        except psycopg.Error as exc:
            if len(unique) == 1:
                outcome[unique[0].event_id] = _refused(exc)
            else:  # one row's content spoiled the statement: find it, store the rest
                log.warning("webhook batch of %s refused, storing one by one: %s",
                            len(unique), _first_line(exc))  # fmt: skip
                for r in unique:
                    try:
                        outcome.update(await self._insert([r]))
                    except psycopg.Error as one:
                        outcome[r.event_id] = _refused(one)
        results: list[int | BaseException | None] = []
        for r in batch:
            got = outcome.get(r.event_id)
            if isinstance(got, BaseException) or first[r.event_id] is r:
                results.append(got)  # an error, the new row's id, or None: stored before
            else:  # a later copy of an event in this batch: the first one is stored
                results.append(None)
        return results

    async def _ignore_batch(self, batch: list[tuple[int, datetime]]) -> list[bool]:
        now = max(at for _, at in batch)
        try:
            rows = await self._execute(_IGNORE, (now, [row_id for row_id, _ in batch]))
        except (InboxUnavailable, psycopg.Error) as exc:
            # Still pending: the retry job takes them after its grace period.
            log.warning("marking %s webhook events ignored failed: %s", len(batch), exc)
            return [False] * len(batch)
        done = {int(r[0]) for r in rows}
        return [row_id in done for row_id, _ in batch]


def _refused(exc: psycopg.Error) -> BaseException:
    if isinstance(exc, psycopg.errors.DataError):
        # Valid JSON PostgreSQL will not store (e.g. \u0000 in a string): never retryable.
        return WebhookPayloadInvalid(f"payload cannot be stored: {_first_line(exc)}")
    return InboxUnavailable(f"webhook inbox unavailable: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
