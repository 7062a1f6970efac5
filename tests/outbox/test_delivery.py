"""Delivery to a live receiver: signatures, retries, crashes, replays, order, concurrency.

The receiver (tests/outbox/receiver.py) verifies with the standardwebhooks
library and applies each event once per ``webhook-id``: what the README's
reference receiver does. Time moves only by the passed clock; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from core.clock import FrozenClock
from core.outbox.delivery import LEASE, DeliveryConfig, attempt, claim, deliver_pass
from core.outbox.endpoints import Guard, get_endpoint
from core.outbox.events import replay_event, replay_range
from core.outbox.sender import new_client
from tests.outbox.helpers import Factory, deliveries, drain, emit, endpoint, fan_out_all, log
from tests.outbox.receiver import Receiver


async def test_each_event_arrives_signed_in_the_standard_webhooks_format(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    _, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    await emit(factory, clock.now(), 3)
    await drain(factory, clock, config)
    assert len(receiver.requests) == 3 and all(r.verified for r in receiver.requests)
    first = receiver.requests[0]
    assert first.headers["webhook-id"].startswith("evt_")
    assert first.headers["webhook-signature"].startswith("v1,")
    assert first.headers["content-type"] == "application/json"
    event = receiver.effects[0]
    assert event["type"] == "booking.paid" and event["api_version"] == "2026-12-01"
    assert event["id"] == first.headers["webhook-id"]
    # Tampered: the library refuses it.
    forged = first.body.replace(b'"id":1', b'"id":2')
    try:
        Webhook(receiver.secret).verify(forged, first.headers)
    except Exception as exc:
        assert "signature" in str(exc).lower()
    else:
        raise AssertionError("a changed body verified")
    rows = await log(factory)
    assert [(r.outcome, r.status_code) for r in rows] == [("delivered", 200)] * 3
    assert all(r.latency_ms >= 0 and r.response_excerpt == '{"ok": true}' for r in rows)
    assert {d.status for d in await deliveries(factory)} == {"delivered"}


async def test_retries_crash_and_replay_have_one_effect_at_a_deduplicating_receiver(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    """The receiver applies, then answers 500 twice (its answer lost); then a worker
    crashes between sending and recording; then an admin replays: one effect each."""
    endpoint_id, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    receiver.apply_before_answer = True
    receiver.answer = lambda n, msg_id: 500 if n <= 2 else 200
    await emit(factory, clock.now(), 1)
    await drain(factory, clock, config)
    clock.advance(timedelta(minutes=1))  # past the first backoff (30 s at most)
    await drain(factory, clock, config)
    clock.advance(timedelta(minutes=2))
    await drain(factory, clock, config)
    assert [r.outcome for r in await log(factory)] == ["failed", "failed", "delivered"]

    # A second event: claimed and sent, then the worker dies before recording.
    await emit(factory, clock.now(), 1, type="booking.cancelled")
    await drain(factory, clock, config)  # fans it out, sends, records
    await emit(factory, clock.now(), 1, type="booking.refunded")
    await fan_out_all(factory, clock)
    async with factory() as db, db.begin():
        claims = await claim(db, now=clock.now(), limit=10)
    assert len(claims) == 1
    async with new_client(timeout=5) as client:
        assert (await attempt(client, claims[0], config)).delivered  # ...and no record
    await drain(factory, clock, config)
    assert len(receiver.requests) == 5  # the lease keeps it from being sent again at once
    clock.advance(LEASE + timedelta(seconds=1))
    await drain(factory, clock, config)
    assert len(receiver.requests) == 6

    async with factory() as db, db.begin():
        ep = await get_endpoint(db, endpoint_id)
        first = receiver.effects[0]["id"]
        assert await replay_event(db, endpoint=ep, public_id=first, now=clock.now()) == 1
        span = await replay_range(
            db, endpoint=ep, start=clock.now() - timedelta(days=1),
            end=clock.now() + timedelta(days=1), now=clock.now(),
        )  # fmt: skip
        assert span == 2  # the first is already queued again
    await drain(factory, clock, config)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 9 and len(set(ids)) == 3  # sent nine times, three events
    assert receiver.effect_types() == ["booking.paid", "booking.cancelled", "booking.refunded"]


async def test_a_receiver_down_for_an_hour_gets_everything_afterwards_in_order(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    _, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    down = True
    receiver.answer = lambda n, msg_id: 503 if down else 200
    start = clock.now()
    # Written in reverse: the earliest event commits last. Order is by event time.
    await emit(factory, start + timedelta(seconds=20), 10)
    await emit(factory, start, 10)
    await fan_out_all(factory, clock)
    for _ in range(12):
        await drain(factory, clock, config)
        clock.advance(timedelta(minutes=5))
    tried = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(tried) == 1 and len(receiver.requests) >= 5  # only the first, with backoff
    assert not receiver.effects
    down = False
    clock.advance(timedelta(hours=2))  # past the longest wait the backoff had reached
    await drain(factory, clock, config)
    async with factory() as db:
        in_time_order = [
            f"evt_{u.hex}"
            for u in (
                await db.execute(text("SELECT uid FROM outbox_events ORDER BY occurred_at, id"))
            ).scalars()
        ]
    assert receiver.effect_ids() == in_time_order
    assert len(in_time_order) == 20


async def test_an_unordered_endpoint_does_not_wait_for_a_failing_event(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    _, receiver.secret = await endpoint(factory, guard, clock, receiver.url, ordered=False)
    await emit(factory, clock.now(), 5)
    async with factory() as db:
        uid = (await db.execute(text("SELECT uid FROM outbox_events ORDER BY id LIMIT 1"))).scalar()
    poison = f"evt_{uid.hex}"
    receiver.answer = lambda n, msg_id: 500 if msg_id == poison else 200
    await fan_out_all(factory, clock)
    results = await drain(factory, clock, config)
    assert results[0].claimed == 5  # all at once
    assert len(receiver.effects) == 4 and poison not in receiver.effect_ids()


async def test_two_workers_claim_disjoint_deliveries_without_waiting(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    await endpoint(factory, guard, clock, receiver.url, ordered=False)
    await emit(factory, clock.now(), 50)
    await fan_out_all(factory, clock)
    async with factory() as one, factory() as two:
        await one.begin()
        await two.begin()
        first = await claim(one, now=clock.now(), limit=20)  # locks held: not committed
        second = await asyncio.wait_for(claim(two, now=clock.now(), limit=20), 10)
        await one.commit()
        await two.commit()
    async with factory() as db, db.begin():
        third = await claim(db, now=clock.now(), limit=100)  # the leases keep the first 40
    ids = [c.id for c in first + second + third]
    assert len(first) == len(second) == 20 and len(third) == 10
    assert len(set(ids)) == 50


async def test_gives_up_after_the_window_and_disables_an_endpoint_failing_for_days(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    endpoint_id, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    receiver.answer = lambda n, msg_id: 500
    start = clock.now()
    disabled_on = None
    for step in range(8 * 6):  # six days, three hours a step
        if step % 8 == 0:
            await emit(factory, clock.now(), 1)  # the marketplace keeps going
        for result in await drain(factory, clock, config):
            if result.disabled:
                disabled_on = clock.now()
        clock.advance(timedelta(hours=3))
    first = (await deliveries(factory))[0]
    assert first.status == "failed" and first.attempts >= 10
    assert first.last_attempt_at >= start + timedelta(hours=72)
    assert disabled_on is not None and disabled_on >= start + timedelta(days=5)
    async with factory() as db:
        ep = await get_endpoint(db, endpoint_id)
    assert not ep.enabled and ep.disabled_reason and "automatically" in ep.disabled_reason
    sent = len(receiver.requests)
    clock.advance(timedelta(days=1))
    await emit(factory, clock.now(), 1)
    await drain(factory, clock, config)
    assert len(receiver.requests) == sent  # a disabled endpoint gets nothing


async def test_a_name_that_rebinds_to_a_private_address_is_refused_at_send_time(
    factory: Factory, clock: FrozenClock, config: DeliveryConfig
) -> None:
    addresses = {"hooks.example.com": ["93.184.216.34"]}

    async def resolver(host: str, port: int) -> list[str]:
        return addresses[host]

    guard = Guard(allowed=(), resolver=resolver)
    await endpoint(factory, guard, clock, "https://hooks.example.com/coachpay")
    addresses["hooks.example.com"] = ["10.0.0.7"]  # the DNS answer changed since
    await emit(factory, clock.now(), 1)
    sent = DeliveryConfig(allowed=(), resolver=resolver)
    await drain(factory, clock, sent)
    (row,) = await log(factory)
    assert row.outcome == "refused" and row.status_code is None
    assert "10.0.0.7" in row.error and "private" in row.error


async def test_rotation_signs_with_both_secrets_during_the_overlap_then_only_the_new(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    from core.outbox.endpoints import rotate_secret

    endpoint_id, old = await endpoint(factory, guard, clock, receiver.url)
    async with factory() as db, db.begin():
        _, new = await rotate_secret(
            db, endpoint_id=endpoint_id, overlap_hours=24, actor_user_id=None, now=clock.now()
        )
    await emit(factory, clock.now(), 1)
    await drain(factory, clock, config)
    clock.advance(timedelta(hours=25))
    await emit(factory, clock.now(), 1)
    await drain(factory, clock, config)
    during, after = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(during.body, during.headers)
    Webhook(new).verify(after.body, after.headers)
    try:
        Webhook(old).verify(after.body, after.headers)
    except Exception:
        pass
    else:
        raise AssertionError("the old secret still verifies after the overlap")


async def test_a_pass_with_nothing_to_do_is_idle(
    factory: Factory, clock: FrozenClock, config: DeliveryConfig
) -> None:
    async with new_client() as client:
        result = await deliver_pass(factory, clock=clock, client=client, config=config)
    assert not result.busy


async def test_events_older_than_the_retention_go_with_their_deliveries_and_log(
    factory: Factory, clock: FrozenClock, guard: Guard, config: DeliveryConfig, receiver: Receiver
) -> None:
    from core.outbox.events import prune

    await endpoint(factory, guard, clock, receiver.url)
    await emit(factory, clock.now(), 3)
    await drain(factory, clock, config)
    clock.advance(timedelta(days=31))
    await emit(factory, clock.now(), 1)
    async with factory() as db, db.begin():
        assert await prune(db, now=clock.now()) == 3
    async with factory() as db:
        counts = [
            (await db.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
            for t in ("outbox_events", "outbox_deliveries", "outbox_attempts")
        ]
    assert counts == [1, 0, 0]


async def test_an_ordered_chain_stops_at_the_batch_size_without_skipping_an_event(
    factory: Factory, clock: FrozenClock, guard: Guard, receiver: Receiver
) -> None:
    _, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    await emit(factory, clock.now(), 7)
    await fan_out_all(factory, clock)
    small = DeliveryConfig(allowed=guard.allowed, batch=2)
    await drain(factory, clock, small)
    assert len(receiver.requests) == 7 and len(receiver.effects) == 7
    assert {d.status for d in await deliveries(factory)} == {"delivered"}
