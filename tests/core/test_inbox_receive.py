"""core.inbox_receive: group-committed webhook receipts (real PostgreSQL, real commits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.inbox_receive import Batcher, InboxReceiver, InboxUnavailable, Receipt
from core.stripe_webhooks import WebhookPayloadInvalid

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def receipt(event_id: str, payload: str | None = None) -> Receipt:
    body = payload or f'{{"id": "{event_id}", "object": "event", "data": {{"object": {{}}}}}}'
    return Receipt(event_id, "platform", "test.thing", None, False, body, NOW, NOW)


@pytest.fixture
async def receiver(commit_db_url: str, clean_engine: AsyncEngine) -> AsyncIterator[InboxReceiver]:
    rx = InboxReceiver(commit_db_url, connections=3)
    yield rx
    await rx.close()


async def _rows(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT stripe_event_id, status, attempts FROM webhook_events ORDER BY id")
        )
        return [(r[0], r[1], r[2]) for r in result]


async def test_concurrent_receipts_share_statements_and_each_gets_its_row(
    receiver: InboxReceiver, clean_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = 0
    execute = receiver._execute

    async def counting(sql: str, params: object) -> list[tuple[object, ...]]:
        nonlocal statements
        statements += 1
        return await execute(sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(receiver, "_execute", counting)
    ids = await asyncio.gather(*(receiver.store(receipt(f"evt_{i}")) for i in range(60)))
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 60
    assert statements < 60  # batched: at most a few statements for 60 receipts
    rows = await _rows(clean_engine)
    assert sorted(r[0] for r in rows) == sorted(f"evt_{i}" for i in range(60))
    assert {r[1] for r in rows} == {"pending"}


async def test_duplicates_in_one_batch_and_across_batches(
    receiver: InboxReceiver, clean_engine: AsyncEngine
) -> None:
    assert isinstance(await receiver.store(receipt("evt_old")), int)
    results = await asyncio.gather(
        receiver.store(receipt("evt_new")),
        receiver.store(receipt("evt_new")),
        receiver.store(receipt("evt_old")),
        receiver.store(receipt("evt_other")),
        receiver.store(receipt("evt_new")),
    )
    new, again, old, other, third = results
    assert isinstance(new, int) and isinstance(other, int)
    assert again is None and third is None and old is None  # answered duplicate=true
    assert sorted(r[0] for r in await _rows(clean_engine)) == ["evt_new", "evt_old", "evt_other"]


async def test_a_row_postgres_refuses_fails_alone(
    receiver: InboxReceiver, clean_engine: AsyncEngine
) -> None:
    # Valid JSON, but jsonb cannot hold \u0000: the batch is retried row by row.
    poison = receipt("evt_poison", '{"id": "evt_poison", "note": "\\u0000"}')
    results = await asyncio.gather(
        receiver.store(receipt("evt_a")),
        receiver.store(poison),
        receiver.store(receipt("evt_b")),
        return_exceptions=True,
    )
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], WebhookPayloadInvalid)
    assert sorted(r[0] for r in await _rows(clean_engine)) == ["evt_a", "evt_b"]


async def test_a_failing_batch_fails_every_caller_and_writes_nothing(
    receiver: InboxReceiver, clean_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(sql: str, params: object) -> list[tuple[object, ...]]:
        raise InboxUnavailable("webhook inbox unavailable: server closed the connection")

    monkeypatch.setattr(receiver, "_execute", broken)
    results = await asyncio.gather(
        *(receiver.store(receipt(f"evt_{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, InboxUnavailable) for r in results)
    assert await _rows(clean_engine) == []


async def test_database_away_is_inbox_unavailable() -> None:
    rx = InboxReceiver("postgresql://postgres@127.0.0.1:1/nowhere", timeout=0.5)
    try:
        with pytest.raises(InboxUnavailable):
            await rx.store(receipt("evt_lost"))
    finally:
        await rx.close()


async def test_ignore_marks_only_rows_still_owed(
    receiver: InboxReceiver, clean_engine: AsyncEngine
) -> None:
    ids = await asyncio.gather(*(receiver.store(receipt(f"evt_{i}")) for i in range(3)))
    later = NOW + timedelta(seconds=1)
    done = await asyncio.gather(*(receiver.ignore(i, later) for i in ids if i is not None))
    assert done == [True, True, True]
    assert await receiver.ignore(ids[0] or 0, later) is False  # done already: unchanged
    assert {(r[1], r[2]) for r in await _rows(clean_engine)} == {("ignored", 1)}


async def test_receiver_reopens_after_close(
    receiver: InboxReceiver, clean_engine: AsyncEngine
) -> None:
    assert isinstance(await receiver.store(receipt("evt_1")), int)
    await receiver.close()
    assert isinstance(await receiver.store(receipt("evt_2")), int)


async def test_batcher_runs_waiting_items_together() -> None:
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        await gate.wait()
        return [i * 10 if i != 3 else ValueError("three") for i in items]

    batcher: Batcher[int, int] = Batcher(flush, concurrency=1)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.01)  # the first flush is running: the rest queue behind it
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 5)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == 0
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[:2] == [10, 20] and isinstance(results[2], ValueError) and results[3] == 40
    assert seen == [[0], [1, 2, 3, 4]]
    await batcher.aclose()


async def test_worker_marks_unhandled_events_ignored_together_and_runs_handled_ones(
    receiver: InboxReceiver, clean_engine: AsyncEngine
) -> None:
    from core.clock import FrozenClock
    from core.db import session_factory
    from core.inbox import HandlerContext, HandlerRegistry, process_due
    from core.settings import load_settings

    seen: list[str] = []

    async def handle(db: object, event: object, ctx: object) -> None:
        seen.append(event.id)  # type: ignore[attr-defined]

    registry = HandlerRegistry()
    registry.register("test.handled", handle)
    handled = Receipt(
        "evt_h", "platform", "test.handled", None, False,
        '{"id": "evt_h", "object": "event", "type": "test.handled", "created": 1,'
        ' "data": {"object": {}}}',
        NOW, NOW,
    )  # fmt: skip
    await asyncio.gather(
        receiver.store(handled), *(receiver.store(receipt(f"evt_{i}")) for i in range(4))
    )
    ctx = HandlerContext(gateway=None, clock=FrozenClock(NOW), settings=load_settings())  # type: ignore[arg-type]
    factory = session_factory(clean_engine)
    assert await process_due(factory, registry, ctx, now=NOW) == 5
    assert seen == ["evt_h"]
    rows = {r[0]: (r[1], r[2]) for r in await _rows(clean_engine)}
    assert rows.pop("evt_h") == ("processed", 1)
    assert set(rows.values()) == {("ignored", 1)} and len(rows) == 4
    assert await process_due(factory, registry, ctx, now=NOW) == 0  # nothing owed any more
