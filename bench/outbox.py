"""Webhook delivery throughput: outbox events sent, signed, to a local receiver.

    uv run python -m bench.outbox              # 5,000 events (unordered), 1,000 (ordered)
    uv run python -m bench.outbox --quick      # 1,000 / 200

The receiver is a trivial ASGI app (it answers 200 to every POST) on uvicorn
in a process of its own, so its CPU is not ours. Baseline, in the same run:
the receiver's own rate with a trivial client (httpx, the same concurrency,
the same body, no database). Then events are bulk-inserted into the outbox
(not timed) and the delivery passes of ``coachpay worker`` run until all are
delivered: fan-out, claims, signing, the POSTs and the log, timed. Once for
an unordered endpoint (concurrent sends), once for an ordered one (one at a
time, its head first). Prints events/s and the ratio to the baseline, and a
``RESULT bench=outbox ...`` line for bench/all.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from bench.common import (
    DEFAULT_URL,
    format_table,
    free_port,
    loadavg,
    result_line,
    scratch_database,
)
from core.clock import FrozenClock
from core.db import create_engine, session_factory
from core.outbox import catalog
from core.outbox.delivery import DeliveryConfig, Factory, deliver_pass
from core.outbox.endpoints import Guard, create_endpoint, update_endpoint
from core.outbox.events import replay_range
from core.outbox.sender import new_client
from migrations.runner import upgrade

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RECEIVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, http="httptools", loop="uvloop", lifespan="off")
"""
EVENTS = (
    "INSERT INTO outbox_events (type, occurred_at, data) "
    "SELECT 'booking.paid', :at + g * interval '1 millisecond', jsonb_build_object('booking', "
    "jsonb_build_object('id', g, 'status', 'paid', 'amount', 10000, 'currency', 'usd', "
    "'coach_id', g % 100, 'mentee_id', g, 'coaching_session_id', g % 500, "
    "'paid_at', '2026-12-01T12:00:00.000000Z', 'session_url', '/v1/sessions/' || (g % 500))) "
    "FROM generate_series(1, :n) g"
)


async def baseline(url: str, n: int, concurrency: int) -> float:
    """The receiver's rate with a trivial client: same body, same concurrency."""
    envelope = catalog.envelope(
        uid=uuid.uuid4(), type="booking.paid", occurred_at=NOW, data={"booking": {"id": 1}}
    )
    body = catalog.body(envelope)
    gate = asyncio.Semaphore(concurrency)
    async with new_client(connections=concurrency) as client:

        async def one() -> None:
            async with gate:
                r = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                r.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - started)


async def drain(factory: Factory, clock: FrozenClock, config: DeliveryConfig, want: int) -> float:
    """Delivery passes until ``want`` deliveries are made; events per second."""
    done = 0
    started = time.perf_counter()
    async with new_client(connections=config.concurrency) as client:
        while done < want:
            result = await deliver_pass(factory, clock=clock, client=client, config=config)
            done += result.delivered
            if result.failed:
                raise RuntimeError(f"{result.failed} deliveries failed")
    return want / (time.perf_counter() - started)


async def run(
    db_url: str, n: int, n_ordered: int, concurrency: int, receiver: str
) -> dict[str, float]:
    engine = create_engine(db_url, pool_size=4)
    factory = session_factory(engine)
    clock = FrozenClock(NOW)
    guard = Guard(allowed=(ipaddress.ip_network("127.0.0.1/32"),))
    config = DeliveryConfig(allowed=guard.allowed, batch=200, concurrency=concurrency)
    try:
        async with factory() as db, db.begin():
            free, _ = await create_endpoint(db, url=receiver, ordered=False, guard=guard,
                                            actor_user_id=None, now=clock.now())  # fmt: skip
            await db.execute(text(EVENTS), {"at": NOW - timedelta(hours=1), "n": n})
        unordered = await drain(factory, clock, config, n)
        async with factory() as db, db.begin():
            await update_endpoint(db, endpoint_id=free.id, changes={"enabled": False},
                                  guard=guard, actor_user_id=None, now=clock.now())  # fmt: skip
            ordered_ep, _ = await create_endpoint(db, url=receiver, ordered=True, guard=guard,
                                                  actor_user_id=None, now=clock.now())  # fmt: skip
            end = NOW - timedelta(hours=1) + timedelta(milliseconds=n_ordered + 1)
            await replay_range(db, endpoint=ordered_ep, start=NOW - timedelta(days=1), end=end,
                               now=clock.now())  # fmt: skip
        ordered = await drain(factory, clock, config, n_ordered)
    finally:
        await engine.dispose()
    return {"unordered": unordered, "ordered": ordered}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int)
    p.add_argument("--ordered-events", type=int)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    n = args.events or (1000 if args.quick else 5000)
    n_ordered = args.ordered_events or n // 5
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    url = f"http://127.0.0.1:{port}/hooks"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)
        load_before = loadavg()
        base = asyncio.run(baseline(url, n, args.concurrency))
        with scratch_database(args.url, f"coachpay_bench_outbox_{port}") as db_url:
            upgrade(db_url)
            got = asyncio.run(run(db_url, n, n_ordered, args.concurrency, url))
    finally:
        proc.terminate()
        proc.wait(10)
    rows = [
        ["trivial client (baseline)", n, base, 1.0],
        ["outbox, unordered endpoint", n, got["unordered"], got["unordered"] / base],
        ["outbox, ordered endpoint", n_ordered, got["ordered"], got["ordered"] / base],
    ]
    print(format_table(["sender", "events", "per second", "ratio"], rows))
    print(f"concurrency {args.concurrency}; load average {load_before} -> {loadavg()}")
    print(result_line("outbox", {
        "events": n, "baseline_per_s": base, "unordered_per_s": got["unordered"],
        "ordered_per_s": got["ordered"], "ratio": got["unordered"] / base,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
