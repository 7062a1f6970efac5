"""``coachpay demo``: a small marketplace, driven end to end through the real code path.

The app is served in-process (uvicorn) so that the Stripe emulator's signed
webhooks reach it exactly as Stripe's would; coaches, mentees and staff act
through the HTTP API with their own tokens, and the emulator's control API
plays the people and banks (finish onboarding, pay, dispute). A simulated
clock (the app's and the emulator's, moved together) runs five days: paid
bookings, a partial refund, a lost dispute, the 72 h hold released, payouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from api import demo_receiver
from api.app import create_app
from api.auth import mint_token
from api.demo_receiver import DemoReceiver
from api.jobs import cycle_summary
from api.runtime import Runtime
from core.clock import FrozenClock, save_simulated_offset

log = logging.getLogger("coachpay.demo")
TOKEN_TTL = timedelta(days=30)
# (sub, display currency, sessions: (title, price in minor units, starts in hours))
COACHES: tuple[tuple[str, str, tuple[tuple[str, int, int], ...]], ...] = (
    ("coach-ana", "usd", (("Career strategy", 12000, 2), ("Interview drill", 8000, 240))),
    ("coach-ben", "usd", (("Python code review", 15000, 3), ("System design", 9900, 250))),
    ("coach-kenji", "jpy", (("Business etiquette", 9000, 2), ("Pitch practice", 6000, 260))),
)  # fmt: skip
MENTEES = tuple(f"mentee-{i}" for i in range(1, 9))


class DemoClock(FrozenClock):
    """Frozen while the demo moves it; then it runs on from there at real speed."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self._since: datetime | None = None

    def now(self) -> datetime:
        base = super().now()
        return base if self._since is None else base + (datetime.now(UTC) - self._since)

    def run_freely(self) -> None:
        self._since = datetime.now(UTC)

    @property
    def ahead_by(self) -> timedelta:
        """How far ahead of the wall clock it runs (once running freely)."""
        return self.now() - datetime.now(UTC)


@dataclass
class Demo:
    runtime: Runtime
    app_url: str
    stripe: httpx.AsyncClient
    api: httpx.AsyncClient
    clock: DemoClock
    tokens: dict[str, str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    result: dict[str, Any] = field(default_factory=dict)
    took: float = 0.0
    receiver: DemoReceiver | None = None
    endpoint_id: int | None = None

    def auth(self, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[sub]}"}

    async def call(self, method: str, path: str, sub: str, **kw: Any) -> Any:
        r = await self.api.request(method, path, headers=self.auth(sub), **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} as {sub}: {r.status_code} {r.text}")
        return r.json()

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.stripe.post(f"/_emulator/{path}", json=body or {})
        if r.status_code >= 400:
            raise RuntimeError(f"emulator {path}: {r.status_code} {r.text}")
        return r.json()

    async def settle(self) -> None:
        """Every webhook delivered and processed (the app processes right after answering)."""
        await self.control("webhooks/flush", {"timeout": 20})
        async with self.runtime.context.factory() as db:
            for _ in range(100):
                left = await db.scalar(
                    text("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
                )
                if not left:
                    return
                await asyncio.sleep(0.05)

    async def deliver_events(self) -> None:
        """Send what the outbox owes the receiver (what the worker's job does each second)."""
        await demo_receiver.deliver_owed(self.runtime.context.factory, clock=self.clock)

    async def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        await self.control("clock/advance", {"seconds": int(delta.total_seconds())})


def _free_port(host: str, wanted: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((host, wanted))  # 0: the system picks one
        except OSError:
            s.bind((host, 0))
        return int(s.getsockname()[1])


async def _reset(runtime: Runtime) -> bool:
    """Only an empty database, or the embedded one (which is the demo's own), is seeded."""
    async with runtime.context.factory() as db, db.begin():
        used = await db.scalar(text("SELECT EXISTS (SELECT 1 FROM ledger_transactions)"))
        if not used:
            return True
        if runtime.settings.database_url is not None:
            return False
        tables = await db.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
        names = ", ".join(f'"{t}"' for t in tables)
        await db.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    print("(the embedded demo database had data from an earlier run: reset)")
    return True


async def seed(demo: Demo) -> dict[str, Any]:
    """The story; answers what the summary printout needs."""
    rt = demo.runtime
    for sub, _, _ in COACHES:
        link = await demo.call("POST", "/v1/coaches/me/onboarding", sub, json={})
        await demo.control(f"accounts/{link['stripe_account_id']}/complete_onboarding")
    await demo.settle()
    now = demo.clock.now()
    sessions: list[dict[str, Any]] = []
    for sub, cur, offered in COACHES:
        for title, price, hours in offered:
            start = now + timedelta(hours=hours)
            end = start + timedelta(hours=1)
            body = {"title": title, "price": price, "currency": cur, "capacity": 6,
                    "starts_at": start.isoformat(), "ends_at": end.isoformat()}  # fmt: skip
            sessions.append(await demo.call("POST", "/v1/sessions", sub, json=body))
    soon = [s for s in sessions if s["starts_at"] < (now + timedelta(days=1)).isoformat()]
    later = [s for s in sessions if s not in soon]
    bookings: list[dict[str, Any]] = []

    async def book(mentee: str, session: dict[str, Any], outcome: str = "succeeded") -> None:
        b = await demo.call("POST", f"/v1/sessions/{session['id']}/bookings", mentee, json={})
        await demo.control(
            f"checkout/sessions/{b['checkout_session_id']}/pay", {"outcome": outcome}
        )
        bookings.append({**b, "mentee": mentee})

    # Day 0: the sessions starting in a few hours fill up.
    for i, mentee in enumerate(MENTEES):
        await book(mentee, soon[i % len(soon)])
    await book(MENTEES[0], later[0], outcome="failed")  # a declined card: stays pending
    await demo.settle()
    # A partial refund (admin) and a dispute the platform loses.
    refunded = bookings[0]
    await demo.call("POST", f"/v1/bookings/{refunded['id']}/refund", "admin-demo",
                    json={"amount": refunded["amount"] // 4, "reason": "late start"})  # fmt: skip
    disputed = bookings[1]
    async with rt.context.factory() as db:
        charge = await db.scalar(
            text("SELECT charge_id FROM bookings WHERE id = :b"), {"b": disputed["id"]}
        )
    dispute = await demo.control(f"charges/{charge}/dispute", {"reason": "fraudulent"})
    await demo.settle()
    await demo.control(f"disputes/{dispute['id']}/close", {"outcome": "lost"})
    await demo.settle()
    # Days 1-4: the later sessions sell a seat a day; then the hold ends for day 0.
    for day in range(1, 5):
        await demo.advance(timedelta(days=1))
        for j, session in enumerate(later):
            await book(MENTEES[(day + j) % len(MENTEES)], session)
        await demo.settle()
    await demo.advance(timedelta(hours=6))
    from payouts.jobs import run_cycle

    ctx = rt.context
    cycle = await run_cycle(
        ctx.factory, gateway=ctx.gateway, clock=demo.clock, settings=rt.settings
    )
    await demo.settle()
    return {"bookings": len(bookings), "cycle": cycle}


@contextlib.asynccontextmanager
async def running_demo(runtime: Runtime, *, port: int | None = None) -> AsyncIterator[Demo]:
    """The app served on ``port`` (busy or None: a free one) over a seeded marketplace."""
    # The demo's own receiver listens on loopback, which webhooks may not reach otherwise;
    # a started runtime has built its context (and jobs) from its settings already.
    settings = demo_receiver.with_loopback(runtime.settings)
    if runtime.started and settings is not runtime.settings:
        raise RuntimeError("start the demo's runtime with demo_receiver.with_loopback(settings)")
    runtime.settings = settings
    clock = DemoClock(datetime.now(UTC).replace(microsecond=0))
    runtime.clock = clock
    port = _free_port(settings.host, settings.port if port is None else port)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    app_url = f"http://{shown}:{port}"
    if "public_url" not in settings.model_fields_set:
        # Pages accept writes from their own origin only: where we really listen.
        settings = settings.model_copy(update={"public_url": app_url})
    app = create_app(settings, runtime=runtime, stop_runtime=False)
    config = uvicorn.Config(app, host=settings.host, port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the demo server did not start")
        await asyncio.sleep(0.05)
    assert runtime.stripe_api_base is not None
    stripe = httpx.AsyncClient(base_url=runtime.stripe_api_base, timeout=30)
    api = httpx.AsyncClient(base_url=app_url, timeout=30)
    demo = Demo(runtime, app_url, stripe, api, clock, task=task)
    try:
        demo.receiver, demo.endpoint_id = await demo_receiver.register(
            runtime.context.factory, settings=settings, now=clock.now()
        )
        app.state["demo_receiver"] = demo.receiver
        await demo.control(
            "config",
            {"platform_webhook_url": f"{app_url}/v1/webhooks/stripe",
             "connect_webhook_url": f"{app_url}/v1/webhooks/stripe/connect"},
        )  # fmt: skip
        subs = {s: "coach" for s, _, _ in COACHES} | dict.fromkeys(MENTEES, "mentee")
        subs |= {"finance-demo": "finance", "admin-demo": "admin"}
        demo.tokens = {s: mint_token(settings, s, role, TOKEN_TTL) for s, role in subs.items()}
        started = asyncio.get_running_loop().time()
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.WARNING)  # a request log per webhook drowns the story
        runtime.not_ready["demo_seed"] = "running"  # GET /health/ready: 503 until seeded
        try:
            demo.result = await seed(demo)
            await demo.deliver_events()
        finally:
            root.setLevel(level)
            runtime.not_ready.pop("demo_seed", None)
        demo.took = asyncio.get_running_loop().time() - started
        yield demo
    finally:
        if demo.receiver is not None:
            await demo_receiver.unregister(
                runtime.context.factory, demo.receiver, demo.endpoint_id, now=clock.now()
            )
        await stripe.aclose()
        await api.aclose()
        if not task.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_demo(runtime: Runtime, *, serve: bool) -> int:
    if not runtime.settings.uses_emulator or runtime.stripe_api_base is None:
        print("coachpay demo runs on the Stripe emulator: unset COACHPAY_STRIPE_SECRET_KEY")
        return 2
    if not await _reset(runtime):
        print("coachpay demo seeds an empty database; this one has ledger data. Nothing done.")
        return 2
    async with running_demo(runtime) as demo:
        # From here the simulated clock runs at real speed, and every later coachpay
        # process on this database (serve, worker, payouts run) reads the same time.
        demo.clock.run_freely()
        async with runtime.context.factory() as db, db.begin():
            await save_simulated_offset(db, demo.clock.ahead_by)
        _print_where_to_look(demo)
        if serve:
            from api.jobs import start_scheduler

            runtime.scheduler = start_scheduler(runtime)
            print(f"Serving at {demo.app_url} (Ctrl-C to stop)")
            assert demo.task is not None
            await demo.task
    return 0


def _print_where_to_look(demo: Demo) -> None:
    result, took = demo.result, demo.took
    url = demo.app_url
    kenji = "coach-kenji"
    now = demo.clock.now()
    days = demo.clock.ahead_by.total_seconds() / 86400
    print(f"\ncoachpay demo: {result['bookings']} bookings in {took:.1f} s")
    print(f"  simulated clock: {now:%Y-%m-%d %H:%M} UTC, {days:.2f} days ahead of the wall "
          "clock (`coachpay payouts run` and the pages use it too)")  # fmt: skip
    print("  last payouts run: " + "; ".join(cycle_summary(result["cycle"])))
    settings = demo.runtime.settings
    if settings.database_url is None:
        print(f"  embedded PostgreSQL in {settings.data_dir / 'pg'}: keeps running after the "
              "demo; `coachpay db stop` stops it")  # fmt: skip
    print("\nWhere to look (sign in at the start page with a token below):")
    print(f"  start / sign in    {url}/")
    print(f"  finance dashboard  {url}/finance")
    print(f"  coach page         {url}/coach   (as a coach; finance staff: /coach?coach_id=N)")
    print(f"  admin page         {url}/admin   (outgoing webhooks, what the demo's receiver got, "
          "parked Stripe events)")  # fmt: skip
    print(f"  finance API        {url}/v1/finance/summary?group=day   (Accept: text/csv for CSV)")
    print(f"  API schema         {url}/schema")
    print(f"  metrics, readiness {url}/metrics   {url}/health/ready")
    print("\nTokens (valid 30 days):")
    for sub in ("finance-demo", "admin-demo", "coach-ana", kenji, MENTEES[0]):
        print(f"  {sub:<13} {demo.tokens[sub]}")
    bearer = f"Authorization: Bearer {demo.tokens['finance-demo']}"
    print(f"\nFor example:\n  curl -H '{bearer}' '{url}/v1/finance/summary?group=day'")
