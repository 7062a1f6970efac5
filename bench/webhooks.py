"""Webhook load: signed ``checkout.session.completed`` events over HTTP to ``coachpay serve``.

Run from the repository root: ``uv run python -m bench.webhooks [--quick]`` (see
bench/README.md). What is measured, end to end on loopback:

- a scratch database (migrated), the Stripe emulator in its own process (no
  webhook URL: it delivers nothing itself), and ``coachpay serve --no-jobs``
  (``--workers`` uvicorn processes, 1 by default) pointed at both with a fixed
  webhook secret; with ``--processing off`` also one ``coachpay worker``;
- seeding through the project's services: coaches with an active Connect
  account, published sessions, mentees, bookings made by ``sessions.booking.book``
  (which creates the Checkout Session in the emulator), each paid in the
  emulator (PaymentIntent, Charge, balance transaction exist there);
- the load: for each paid session, an event ``checkout.session.completed``
  carrying the emulator's session object, signed with the platform secret at
  send time, POSTed to ``/v1/webhooks/stripe`` by a light keep-alive HTTP/1.1
  client (bench/webhook_client.py, uvloop, no task per request) on an
  open-loop schedule (fixed rate per step, each request launched at its slot,
  whatever the earlier ones are doing; in-flight requests bounded); the
  client's own CPU is reported per step;
- latency of the HTTP answer (verify + store in the inbox + 200), per step;
- processing: the server handles each event after answering (background task:
  re-read the session and PaymentIntent from the emulator, post the split and
  processing fee, earning, booking PAID), or with ``--processing off`` the
  worker does (``COACHPAY_WEBHOOK_PROCESSING=off``). The bench waits until
  every inbox row is processed and reports how long that took.

On 2 cores the load generator, the server, the emulator and PostgreSQL share
the CPU: the figures are for all of them together on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

if __name__ == "__main__" and not __package__:
    raise SystemExit("run it from the repository root: uv run python -m bench.webhooks")

import httpx
import psycopg
import uvloop

from bench import common
from bench.webhook_client import LoadClient, Tally
from core.clock import FrozenClock

SECRET = "whsec_bench_webhooks_0123456789"
INBOX_RATES = (50, 100, 250, 500, 1000, 1500, 2000)
QUICK_INBOX_RATES = (50, 100, 250)
# The real path re-reads from the emulator and posts: it saturates far below
# the inbox rates (and every event needs a booking seeded first).
# The top step offers more than the server can handle: its handled/s is the capacity
# compared with pgbench (target >= 0.2 of TPC-B at 4 clients, stretch 0.4).
PAYMENT_RATES = (5, 10, 20, 40, 400)
QUICK_PAYMENT_RATES = (5, 10, 200)
PAYMENT_TARGET, PAYMENT_STRETCH = 0.2, 0.4
# Stripe sends one with every Checkout payment; coachpay has no handler for it.
INBOX_TYPE = "payment_intent.succeeded"
WEBHOOK_PATH = "/v1/webhooks/stripe"
SESSIONS = 50  # published sessions (one per coach); bookings spread over them
PRICE = 10000


@dataclass
class Step:
    rate: int
    sent: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0  # not sent: the in-flight bound was reached (the server fell behind)
    latencies: list[float] = field(default_factory=list)  # seconds, send -> answer
    lags: list[float] = field(default_factory=list)  # seconds, slot -> actual send
    wall: float = 0.0
    started_at: float = 0.0  # wall clock
    ids: list[str] = field(default_factory=list)
    settle: float = 0.0  # seconds after the step until the server had handled everything
    client_cpu: float = 0.0  # the load client's CPU seconds / step wall time
    statuses: dict[int, int] = field(default_factory=dict)


# ---- seeding -------------------------------------------------------------------------------------


def start_emulator(port: int, log_path: str) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", str(port), "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_emulator/state", timeout=1.0)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the emulator did not start; see {log_path}")


async def seed(
    db_url: str, emulator_url: str, count: int, concurrency: int
) -> list[dict[str, Any]]:
    """``count`` PENDING bookings through the booking service, each paid in the emulator.

    Returns the paid Checkout Session objects (as the emulator answers them).
    """
    from connect.models import ConnectAccount
    from connect.service import ensure_profile
    from core.db import create_engine, session_factory
    from core.settings import Settings
    from core.stripe_gateway import StripeGateway
    from core.users import provision_user
    from sessions.booking import book
    from sessions.catalog import create_session

    settings = Settings(database_url=db_url, stripe_api_base=emulator_url)
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FrozenClock(now)  # the emulator checks Checkout expiry against real time
    engine = create_engine(db_url, pool_size=concurrency)
    factory = session_factory(engine)
    gateway = StripeGateway("sk_test_bench", api_base=emulator_url, max_retries=2, timeout=30)
    mentees_needed = -(-count // SESSIONS)
    async with factory() as db:
        session_ids = []
        for i in range(SESSIONS):
            user = await provision_user(db, sub=f"bench-coach-{i}", role="coach", now=now)
            await ensure_profile(db, user_id=user.id, settings=settings, now=now)
            db.add(
                ConnectAccount(
                    coach_id=user.id,
                    stripe_account_id=f"acct_bench{i}",
                    charges_enabled=True,
                    payouts_enabled=True,
                    details_submitted=True,
                    transfers_capability="active",
                    status="active",
                    created_at=now,
                    updated_at=now,
                )
            )
            await db.flush()
            s = await create_session(
                db,
                coach_id=user.id,
                title=f"Bench session {i}",
                starts_at=now + timedelta(days=3),
                ends_at=now + timedelta(days=3, hours=1),
                price=PRICE,
                currency="usd",
                capacity=None,
                clock=clock,
            )
            session_ids.append(s.id)
        mentee_ids = []
        for j in range(mentees_needed):
            m = await provision_user(db, sub=f"bench-mentee-{j}", role="mentee", now=now)
            mentee_ids.append(m.id)
        await db.commit()

    pairs = [(session_ids[k % SESSIONS], mentee_ids[k // SESSIONS]) for k in range(count)]
    paid: list[dict[str, Any]] = []
    queue = iter(pairs)
    async with httpx.AsyncClient(base_url=emulator_url, timeout=30) as control:

        async def worker() -> None:
            for session_id, mentee_id in queue:
                async with factory() as db:
                    booking = await book(
                        db,
                        session_id=session_id,
                        mentee_id=mentee_id,
                        gateway=gateway,
                        clock=clock,
                        settings=settings,
                    )
                    await db.commit()
                r = await control.post(
                    f"/_emulator/checkout/sessions/{booking.checkout_session_id}/pay",
                    json={"outcome": "succeeded"},
                )
                r.raise_for_status()
                paid.append(r.json())
                if len(paid) % 2000 == 0:
                    print(f"  seeded {len(paid)}/{count}", flush=True)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    await gateway.aclose()
    await engine.dispose()
    return paid


def event_payload(event_id: str, session: dict[str, Any]) -> bytes:
    """An event shaped like Stripe's (and the emulator's) ``checkout.session.completed``."""
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": "checkout.session.completed",
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": session},
    }
    return json.dumps(event, separators=(",", ":")).encode()


# ---- load ----------------------------------------------------------------------------------------


async def run_step(
    client: LoadClient,
    step: Step,
    payloads: list[tuple[str, bytes]],
    max_in_flight: int,
    drain_timeout: float,
) -> None:
    """Open loop: request i is launched at t0 + i / rate, unless ``max_in_flight`` are open."""
    tally = Tally()
    step.started_at = time.time()
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.05
    for i, (event_id, body) in enumerate(payloads):
        slot = t0 + i / step.rate
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if tally.in_flight >= max_in_flight:
            step.skipped += 1
            continue
        step.lags.append(time.perf_counter() - slot)
        step.sent += 1
        step.ids.append(event_id)
        client.launch(client.request(WEBHOOK_PATH, body), tally)
    deadline = time.perf_counter() + drain_timeout
    while tally.in_flight > 0 and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)  # a counter the callbacks keep: polling it is free
    step.wall = time.perf_counter() - t0
    step.client_cpu = (time.process_time() - cpu0) / step.wall if step.wall else 0.0
    client.cancel_queued()
    step.ok, step.latencies, step.statuses = tally.ok, tally.latencies, tally.statuses
    step.errors = tally.errors + max(tally.in_flight, 0)  # unanswered at the deadline


Payloads = list[tuple[str, bytes]]


async def run_load(
    base_url: str,
    make_payloads: Callable[[int, int], Payloads],
    rates: tuple[int, ...],
    seconds: float,
    args: Any,
) -> list[Step]:
    """One step per rate; ``make_payloads(rate, n)`` gives the step's (event id, body) pairs."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    steps = []
    for rate in rates:
        # Fresh connections per step: the server closes idle ones (keep-alive timeout)
        # while the previous step settles, and a timed-out step leaves some busy.
        client = LoadClient(host, int(port), args.connections, SECRET)
        await client.open()
        warm = Tally()  # the server's first requests on these connections; not counted
        for _ in range(args.connections):
            client.launch(client.get("/health"), warm)
        while warm.in_flight > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        step = Step(rate)
        payloads = make_payloads(rate, int(rate * seconds))
        await run_step(client, step, payloads, args.max_in_flight, args.request_timeout + 5)
        client.close()
        steps.append(step)
        step.settle = await asyncio.to_thread(settle, args.db_url, args.process_timeout)
        print(f"  {rate}/s: {_describe(step)}; settled in {step.settle:.1f} s", flush=True)
        await asyncio.sleep(args.pause)
    return steps


def payment_payloads(sessions: list[dict[str, Any]]) -> Callable[[int, int], Payloads]:
    taken = 0

    def make(rate: int, n: int) -> Payloads:
        nonlocal taken
        chunk, taken = sessions[taken : taken + n], taken + n
        ids = [f"evt_bench_pay_{rate}_{taken - n + k}" for k in range(len(chunk))]
        return [(i, event_payload(i, s)) for i, s in zip(ids, chunk, strict=True)]

    return make


def inbox_payloads(rate: int, n: int) -> Payloads:
    """Events of a type no handler takes: verified, stored, then marked ``ignored``.

    Full size: the PaymentIntent Stripe sends with a Checkout payment, fields as in
    Stripe's API reference (~2.5 kB of JSON, like a checkout.session.completed).
    """
    out = []
    for k in range(n):
        event_id = f"evt_bench_inbox_{rate}_{k}"
        body = json.loads(event_payload(event_id, payment_intent(f"{rate}_{k}", k)))
        body["type"] = INBOX_TYPE
        out.append((event_id, json.dumps(body, separators=(",", ":")).encode()))
    return out


def payment_intent(suffix: str, k: int) -> dict[str, Any]:
    created = int(time.time())
    return {
        "id": f"pi_3Bench{suffix}", "object": "payment_intent", "amount": PRICE,
        "amount_capturable": 0, "amount_details": {"tip": {}}, "amount_received": PRICE,
        "application": None, "application_fee_amount": None,
        "automatic_payment_methods": None, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"pi_3Bench{suffix}_secret_{'x' * 25}", "confirmation_method": "automatic",
        "created": created, "currency": "usd", "customer": f"cus_Bench{k}",
        "description": f"Bench session {k % SESSIONS}", "invoice": None,
        "last_payment_error": None, "latest_charge": f"ch_3Bench{suffix}", "livemode": False,
        "metadata": {"booking_id": str(10_000 + k), "coach_id": str(k % SESSIONS),
                     "session_id": str(k % SESSIONS), "mentee_id": str(k // SESSIONS)},
        "next_action": None, "on_behalf_of": None,
        "payment_method": f"pm_1Bench{suffix}",
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {"installments": None, "mandate_options": None, "network": None,
                     "request_three_d_secure": "automatic"},
            "link": {"persistent_token": None},
        },
        "payment_method_types": ["card", "link"], "processing": None,
        "receipt_email": f"mentee{k}@example.com", "review": None,
        "setup_future_usage": None,
        "shipping": None, "source": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "succeeded",
        "transfer_data": None, "transfer_group": f"group_pi_3Bench{suffix}",
        "charges": {"object": "list", "data": [{
            "id": f"ch_3Bench{suffix}", "object": "charge", "amount": PRICE,
            "amount_captured": PRICE, "amount_refunded": 0,
            "balance_transaction": f"txn_3Bench{suffix}",
            "billing_details": {"address": {"city": "Berlin", "country": "DE",
                                            "line1": "Example Str. 1", "line2": None,
                                            "postal_code": "10115", "state": None},
                                "email": f"mentee{k}@example.com", "name": "Jenny Rosen",
                                "phone": None},
            "captured": True, "created": created, "currency": "usd",
            "outcome": {"network_status": "approved_by_network", "reason": None,
                        "risk_level": "normal", "risk_score": 32, "seller_message":
                        "Payment complete.", "type": "authorized"},
            "paid": True, "payment_intent": f"pi_3Bench{suffix}",
            "payment_method_details": {"card": {
                "brand": "visa", "checks": {"address_line1_check": "pass",
                                            "address_postal_code_check": "pass",
                                            "cvc_check": "pass"},
                "country": "US", "exp_month": 8, "exp_year": 2030,
                "fingerprint": "Xt5EWLLDS7FJjR1c", "funding": "credit", "last4": "4242",
                "network": "visa", "three_d_secure": None, "wallet": None},
                "type": "card"},
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{'C' * 60}{suffix}",
            "refunded": False, "status": "succeeded"}],
            "has_more": False, "total_count": 1,
            "url": f"/v1/charges?payment_intent=pi_3Bench{suffix}"},
    }  # fmt: skip


def _describe(step: Step) -> str:
    lat = sorted(step.latencies)
    ms = [common.percentile(lat, q) * 1000 for q in (0.5, 0.9, 0.99)]
    other = {s: n for s, n in step.statuses.items() if s != 200}
    return (
        f"sent {step.sent}, ok {step.ok}, errors {step.errors}{f' {other}' if other else ''}, "
        f"skipped {step.skipped}, achieved {step.ok / step.wall if step.wall else 0:.0f}/s, "
        f"p50 {ms[0]:.1f} ms p90 {ms[1]:.1f} ms p99 {ms[2]:.1f} ms, "
        f"client CPU {step.client_cpu * 100:.0f}% of a core"
    )


# ---- processing ----------------------------------------------------------------------------------


def inbox_status(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM webhook_events GROUP BY 1").fetchall()
    return {str(s): int(n) for s, n in rows}


def settle(db_url: str, timeout: float) -> float:
    """Seconds until the server has handled all it stored: nothing pending, no new rows.

    Run after every step, so that a step the server could not keep up with does not
    leave its backlog to the next one (requests the client gave up on may still be
    stored and processed). NaN at the timeout.
    """
    start = time.monotonic()
    last = -1
    while time.monotonic() - start < timeout:
        counts = inbox_status(db_url)
        total = sum(counts.values())
        if counts.get("pending", 0) == 0 and total == last:
            return time.monotonic() - start
        last = total
        time.sleep(0.5)
    return float("nan")


def processing_per_step(db_url: str, steps: list[Step]) -> list[tuple[float, float]]:
    """Per step: (seconds from the step's first send to its last event processed, events/s)."""
    out = []
    with psycopg.connect(db_url) as conn:
        for step in steps:
            if not step.ids:
                out.append((float("nan"), 0.0))
                continue
            row = conn.execute(
                "SELECT count(*), max(processed_at) FROM webhook_events "
                "WHERE stripe_event_id = ANY(%s) AND status IN ('processed', 'ignored')",
                (step.ids,),
            ).fetchone()
            n, last = (row[0], row[1]) if row else (0, None)
            if not n or last is None:
                out.append((float("nan"), 0.0))
                continue
            span = last.timestamp() - step.started_at
            out.append((span, n / span if span > 0 else 0.0))
    return out


def verify(db_url: str) -> tuple[list[str], dict[str, int]]:
    """Each processed payment event made one booking PAID with one split posted; the
    ledger balances. Returns the problems and the payment events by inbox status."""
    problems = []
    with psycopg.connect(db_url) as conn:
        by_status: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM webhook_events "
                "WHERE type = 'checkout.session.completed' GROUP BY 1"
            ).fetchall()
        )
        paid = conn.execute("SELECT count(*) FROM bookings WHERE status = 'paid'").fetchone()
        tx = conn.execute(
            "SELECT count(*) FROM ledger_transactions WHERE type = 'session_payment'"
        ).fetchone()
        trial = conn.execute(
            "SELECT COALESCE(sum(balance), 0) FROM ledger_balance_slots"
        ).fetchone()
    processed = by_status.get("processed", 0)
    if not paid or paid[0] != processed:
        problems.append(f"{paid[0] if paid else 0} bookings paid, {processed} events processed")
    if not tx or tx[0] != processed:
        problems.append(f"{tx[0] if tx else 0} payments posted, {processed} events processed")
    if trial and trial[0] != 0:
        problems.append(f"trial balance {trial[0]}")
    return problems, {str(k): int(v) for k, v in by_status.items()}


# ---- processes -----------------------------------------------------------------------------------


@contextmanager
def serve(db_url: str, env: dict[str, str], logdir: str, workers: int) -> Iterator[str]:
    """``coachpay serve --no-jobs [--workers N]``: common.coachpay_serve for one process."""
    log_path = f"{logdir}/serve.log"
    if workers == 1:
        with common.coachpay_serve(db_url, env, log_path) as base:
            yield base
        return
    port = common.free_port()
    cmd = [*common.coachpay_command(), "serve", "--no-jobs", "--workers", str(workers)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with _process(cmd, {"COACHPAY_DATABASE_URL": db_url, **env}, log_path):
        deadline = time.monotonic() + 60
        while True:  # every worker up: a few answers in a row
            try:
                if all(httpx.get(f"{base}/health", timeout=1).status_code < 500 for _ in range(8)):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"coachpay serve not ready in time; see {log_path}")
            time.sleep(0.3)
        yield base


@contextmanager
def worker(db_url: str, env: dict[str, str], logdir: str, wanted: bool) -> Iterator[None]:
    """``coachpay worker`` (jobs on: it drains the inbox) when ``wanted``."""
    if not wanted:
        yield
        return
    full = {"COACHPAY_DATABASE_URL": db_url, **env, "COACHPAY_RUN_JOBS": "true"}
    with _process([*common.coachpay_command(), "worker"], full, f"{logdir}/worker.log"):
        yield


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log_path: str) -> Iterator[None]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n")[0])
    p.add_argument("--url", default=common.DEFAULT_URL, help="server to use (any database)")
    p.add_argument("--rates", default=_csv(INBOX_RATES), help="inbox phase, events/s per step")
    p.add_argument(
        "--payment-rates", default=_csv(PAYMENT_RATES), help="payment phase, events/s per step"
    )
    p.add_argument("--seconds", type=float, default=4.0, help="duration of each step")
    p.add_argument("--quick", action="store_true", help="fewer, shorter steps (2 s)")
    p.add_argument("--connections", type=int, default=64, help="client keep-alive connections")
    p.add_argument("--max-in-flight", type=int, default=2000, help="open requests at most")
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--pause", type=float, default=1.0, help="seconds between steps")
    p.add_argument("--seed-concurrency", type=int, default=8)
    p.add_argument("--process-timeout", type=float, default=600.0, help="wait for the inbox")
    p.add_argument("--log-level", default="INFO", help="server log level (INFO as deployed)")
    p.add_argument("--workers", type=int, default=1, help="coachpay serve --workers")
    p.add_argument(
        "--pgbench-seconds", type=int, default=5, help="the TPC-B baseline (4 clients); 0 skips"
    )
    p.add_argument(
        "--processing",
        choices=("background", "off"),
        default="background",
        help="COACHPAY_WEBHOOK_PROCESSING; off: a `coachpay worker` processes",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.payment_rates = _csv(QUICK_INBOX_RATES), _csv(QUICK_PAYMENT_RATES)
        args.seconds = 2.0
    args.rates = tuple(int(r) for r in str(args.rates).split(",") if r)
    args.payment_rates = tuple(int(r) for r in str(args.payment_rates).split(",") if r)
    return args


def _csv(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


@dataclass
class Phase:
    name: str
    steps: list[Step]
    per_step: list[tuple[float, float]]
    drain: float  # seconds from the end of the load until every event was handled
    counts: dict[str, int]


def run_phase(
    name: str,
    db_url: str,
    base: str,
    make: Callable[[int, int], Payloads],
    rates: tuple[int, ...],
    args: argparse.Namespace,
) -> Phase:
    print(f"{name} phase, load average {common.loadavg()}", flush=True)
    steps = uvloop.run(run_load(base, make, rates, args.seconds, args))
    drain = steps[-1].settle if steps else 0.0
    return Phase(name, steps, processing_per_step(db_url, steps), drain, inbox_status(db_url))


def main(argv: list[str] | None = None) -> int:
    from migrations.runner import upgrade

    args = parse_args(argv)
    n_pay = sum(int(r * args.seconds) for r in args.payment_rates)
    print(f"machine: {common.machine_info(args.url)}; load average {common.loadavg()}")
    print(
        f"payment phase {list(args.payment_rates)}/s, inbox phase {list(args.rates)}/s, "
        f"{args.seconds:g} s per step; client: one process, uvloop, raw HTTP/1.1, "
        f"{args.connections} keep-alive connections; "
        f"server: coachpay serve --no-jobs --workers {args.workers}, processing "
        f"{args.processing}{' + coachpay worker' if args.processing == 'off' else ''}, "
        f"log level {args.log_level}; emulator: its own process",
        flush=True,
    )
    logdir = tempfile.mkdtemp(prefix="coachpay-bench-webhooks-")
    phases: list[Phase] = []
    problems: list[str] = []
    payment_events: dict[str, int] = {}
    pgbench_tps = float("nan")
    if args.pgbench_seconds > 0:
        name = f"coachpay_bench_webhooks_pgbench_{os.getpid()}"
        with common.scratch_database(args.url, name) as pg_url:
            common.pgbench_init(pg_url, 4)
            pgbench_tps = common.pgbench_run(pg_url, 4, args.pgbench_seconds)
        print(f"pgbench TPC-B, 4 clients, scale 4, {args.pgbench_seconds} s: {pgbench_tps:.0f} tps")
    stripe_calls = 0
    with common.scratch_database(args.url, f"coachpay_bench_webhooks_{os.getpid()}") as db_url:
        upgrade(db_url)
        args.db_url = db_url  # for the settle wait after each step
        emu_port = common.free_port()
        emulator = start_emulator(emu_port, f"{logdir}/emulator.log")
        emu_url = f"http://127.0.0.1:{emu_port}"
        try:
            t = time.monotonic()
            sessions = asyncio.run(seed(db_url, emu_url, n_pay, args.seed_concurrency))
            random.Random(1).shuffle(sessions)  # events for the 50 sessions interleaved
            print(f"seeded {len(sessions)} paid bookings in {time.monotonic() - t:.0f} s")
            env = {
                "COACHPAY_STRIPE_API_BASE": emu_url,
                "COACHPAY_STRIPE_WEBHOOK_SECRET": SECRET,
                "COACHPAY_LOG_LEVEL": args.log_level,
                "COACHPAY_RUN_JOBS": "false",
                "COACHPAY_WEBHOOK_PROCESSING": args.processing,
            }
            with (
                serve(db_url, env, logdir, args.workers) as base,
                worker(db_url, env, logdir, args.processing == "off"),
            ):
                if args.payment_rates:
                    make = payment_payloads(sessions)
                    calls0 = emulator_calls(emu_url)
                    phases.append(
                        run_phase("payment", db_url, base, make, args.payment_rates, args)
                    )
                    stripe_calls = emulator_calls(emu_url) - calls0
                    problems, payment_events = verify(db_url)
                if args.rates:
                    phases.append(
                        run_phase("inbox", db_url, base, inbox_payloads, args.rates, args)
                    )
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    print(f"\nload average at the end {common.loadavg()}; logs in {logdir}")
    if payment_events:
        print(f"payment events in the inbox by status: {payment_events}")
    handled = payment_events.get("processed", 0)
    return report(phases, problems, pgbench_tps, stripe_calls / handled if handled else 0.0)


def emulator_calls(emu_url: str) -> int:
    """Requests the emulator answered on Stripe's API so far (its control API left out)."""
    stats = httpx.get(f"{emu_url}/_emulator/stats", timeout=30).json()
    return sum(int(n) for route, n in stats["requests"].items() if " /v1/" in route)


def verdict(ok: bool) -> str:
    return "pass" if ok else "miss"


def report(
    phases: list[Phase], problems: list[str], pgbench_tps: float, calls_per_payment: float
) -> int:
    result: dict[str, object] = {}
    for phase in phases:
        rows = []
        sustained = 0
        p99_at_500 = float("nan")
        for step, (span, proc_rate) in zip(phase.steps, phase.per_step, strict=True):
            lat = sorted(step.latencies)
            p = [common.percentile(lat, q) * 1000 for q in (0.5, 0.9, 0.99)]
            lag99 = common.percentile(sorted(step.lags), 0.99) * 1000
            achieved = step.ok / step.wall if step.wall else 0.0
            rows.append(
                [step.rate, achieved, step.ok, step.errors + step.skipped, p[0], p[1], p[2],
                 lag99, step.client_cpu * 100, span, proc_rate]
            )  # fmt: skip
            if step.errors + step.skipped == 0 and achieved >= 0.95 * step.rate:
                sustained = max(sustained, step.rate)
            if step.rate == 500:
                p99_at_500 = p[2]
        what = {
            "payment": "checkout.session.completed for real paid bookings (handler: re-read "
            "from the emulator, post split + fee, earning, booking PAID)",
            "inbox": f"{INBOX_TYPE}, ~{len(inbox_payloads(1, 1)[0][1]):,} bytes (no handler: "
            "verified, stored, then marked ignored)",
        }[phase.name]
        print(f"\n{phase.name}: {what}")
        print(
            common.format_table(
                ["offered/s", "achieved/s", "ok", "errors", "p50 ms", "p90 ms", "p99 ms",
                 "client lag p99 ms", "client CPU %", "step done (s)", "handled/s"],
                rows,
            )
        )  # fmt: skip
        print(f"inbox: {phase.counts}; all handled {phase.drain:.1f} s after the last step")
        # failed rows: the retry job (not running under --no-jobs) would take them again
        top = phase.steps[-1] if phase.steps else None
        result[f"{phase.name}_sustained_eps"] = sustained
        result[f"{phase.name}_max_offered"] = top.rate if top else 0
        result[f"{phase.name}_achieved_at_max"] = (top.ok / top.wall) if top and top.wall else 0.0
        result[f"{phase.name}_p99_ms_at_500"] = p99_at_500
        result[f"{phase.name}_drain_s"] = phase.drain
    print(
        "\nlatency: request sent -> 200 (verify + store in the inbox); client lag: how late the "
        "generator sent vs its schedule; client CPU: the load client's CPU time / step time "
        "(100 = one core); step done: first send -> last of the step's events "
        "handled (processed/ignored); handled/s: the step's events / that time"
    )
    if problems:
        print("NOT verified:\n  " + "\n  ".join(problems))
    elif any(p.name == "payment" for p in phases):
        print("verified: every payment event made its booking PAID with its split posted; "
              "trial balance 0")  # fmt: skip
    payment = next((p for p in phases if p.name == "payment"), None)
    if payment is not None:
        best = max((rate for _, rate in payment.per_step), default=0.0)
        ratio = best / pgbench_tps if pgbench_tps > 0 else float("nan")
        print(
            f"payments handled: {best:.0f}/s at best = {ratio:.2f} of pgbench "
            f"({pgbench_tps:.0f} tps, same run): {verdict(ratio >= PAYMENT_TARGET)} "
            f"(target {PAYMENT_TARGET}, stretch {PAYMENT_STRETCH}: "
            f"{verdict(ratio >= PAYMENT_STRETCH)})"
        )
        print(
            f"Stripe calls per payment: {calls_per_payment:.2f} "
            f"(target <= 1: {verdict(0 < calls_per_payment <= 1.0)})"
        )
        result["pgbench_tps"] = pgbench_tps
        result["payments_per_s"] = best
        result["payments_ratio"] = ratio
        result["stripe_calls_per_payment"] = calls_per_payment
    result["verified"] = not problems
    print(common.result_line("webhooks", result))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
