"""The delivery loop as ``serve`` / ``worker`` run it: a scheduled job, and the CLI command."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from api.cli import _parser
from api.jobs import OUTBOX_JOB_ID, start_scheduler
from api.runtime import Runtime
from core.clock import FrozenClock
from core.outbox.delivery import DeliveryConfig
from core.outbox.endpoints import Guard
from core.outbox.loop import deliver_due, run_forever
from core.settings import load_settings
from tests.outbox.helpers import Factory, emit, endpoint, fan_out_all
from tests.outbox.receiver import Receiver


async def test_the_jobs_include_the_delivery_loop(commit_db_url: str) -> None:
    settings = load_settings(database_url=commit_db_url, stripe_secret_key="sk_test_x",
                             stripe_api_base="https://stripe.test", run_jobs=False)  # fmt: skip
    runtime = Runtime(settings)
    await runtime.start()
    try:
        scheduler = start_scheduler(runtime)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        scheduler.shutdown(wait=False)
    finally:
        await runtime.stop()
    assert OUTBOX_JOB_ID in jobs
    assert jobs[OUTBOX_JOB_ID].trigger.interval.total_seconds() == 1


async def test_deliver_due_takes_the_allow_list_from_settings(
    factory: Factory, clock: FrozenClock, guard: Guard, receiver: Receiver
) -> None:
    _, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    await emit(factory, clock.now(), 3)
    await fan_out_all(factory, clock)
    default = DeliveryConfig.from_settings(load_settings())
    assert await deliver_due(factory, clock=clock, config=default) == 0  # 127.0.0.1 refused
    assert receiver.requests == []
    allowed = load_settings(webhook_allowed_networks="127.0.0.1/32")
    clock.advance(timedelta(hours=1))  # past the refused attempts' backoff
    config = DeliveryConfig.from_settings(allowed)
    assert await deliver_due(factory, clock=clock, config=config) == 3
    assert len(receiver.effects) == 3


def test_events_listen_arguments() -> None:
    args = _parser().parse_args(
        ["events", "listen", "--forward-to", "http://localhost:3000/hooks", "--events",
         "booking.paid,booking.cancelled", "--from-start"]
    )  # fmt: skip
    assert (args.command, args.events_command) == ("events", "listen")
    assert args.forward_to == "http://localhost:3000/hooks" and args.from_start
    with pytest.raises(SystemExit):
        _parser().parse_args(["events", "listen"])  # --forward-to is required


async def test_run_forever_delivers_until_stopped(
    factory: Factory, clock: FrozenClock, guard: Guard, receiver: Receiver
) -> None:
    _, receiver.secret = await endpoint(factory, guard, clock, receiver.url)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_forever(factory, clock=clock, stop=stop, config=DeliveryConfig(allowed=guard.allowed))
    )
    await emit(factory, clock.now(), 2)
    assert await asyncio.to_thread(receiver.wait_for, 2)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert len(receiver.effects) == 2
