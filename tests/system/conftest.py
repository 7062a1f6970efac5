"""System tests: the whole app over the committing test database and the in-process Stripe
emulator, with one seeded world per module (two coaches, two mentees, finance, admin).

The world is built through the HTTP API and the payout job, as production would build it:
coaches onboard (emulator onboarding + signed ``account.updated``), publish sessions,
mentees book and pay (emulator payment + signed webhooks), the payout cycle releases the
earnings and transfers them, and each coach's Connect balance is paid out to their bank.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.runtime import Runtime
from connect.links import sign_link_token
from core.clock import FrozenClock
from core.db import create_engine, session_factory
from core.settings import Settings, load_settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from payouts.jobs import run_cycle
from tests.api.conftest import (
    CONNECT_SECRET,
    PLATFORM_SECRET,
    TEST_JWT_SECRET,
    StripeSigner,
    Tokens,
)
from tests.conftest import truncate_all

Client = AsyncTestClient[Litestar]
BASE_URL = "http://testserver.local"
# The caller for each role; "a" owns the "own" objects, "b" the "other" ones.
SUBS = {
    "mentee": ("mentee-a", "mentee-b"),
    "coach": ("coach-a", "coach-b"),
    "finance": ("finance-1",),
    "admin": ("admin-1",),
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    # No webhook URL: events are kept, and the seeding delivers them signed, like the Stripe CLI.
    server = EmulatorServer(seed=7).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def identity_settings() -> dict[str, Any]:
    """Extra settings (a module using provider tokens sets the OIDC ones)."""
    return {}


@pytest.fixture(scope="module")
def system_settings(
    commit_db_url: str, emulator: EmulatorServer, identity_settings: dict[str, Any]
) -> Settings:
    return load_settings(
        **identity_settings,
        database_url=commit_db_url,
        stripe_secret_key="sk_test_system",
        stripe_api_base=emulator.base_url,
        stripe_max_retries=0,
        stripe_timeout_seconds=10,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET,
        public_url=BASE_URL,
        run_jobs=False,
        db_pool_size=5,
        platform_fee_bps=2000,
    )


@dataclass
class Party:
    """One side of the world ("a" or "b"): a coach, a mentee, and what they made."""

    coach_id: int = 0
    mentee_id: int = 0
    sessions: dict[str, int] = field(default_factory=dict)  # paid, pending, failed, spare
    bookings: dict[str, int] = field(default_factory=dict)  # paid, pending, failed
    payout_ids: list[int] = field(default_factory=list)
    link_token: str = ""


@dataclass
class World:
    client: Client
    engine: AsyncEngine
    tokens: Tokens
    emulator: EmulatorServer
    settings: Settings
    clock: FrozenClock
    a: Party
    b: Party
    user_ids: dict[str, int]
    tables: list[str]

    def headers(self, role: str | None, side: str = "a") -> dict[str, str]:
        if role is None:
            return {}
        subs = SUBS[role]
        return self.tokens.headers(role, subs[0] if side == "a" else subs[-1])


class Deliverer:
    """Hands the emulator's new events to the app's webhook endpoints, signed."""

    def __init__(self, emulator: EmulatorServer, client: Client) -> None:
        self.emulator, self.client, self.signer = emulator, client, StripeSigner()
        self.mark = len(emulator.state.events)

    async def flush(self) -> int:
        with self.emulator.state.lock:
            events = list(self.emulator.state.events.values())[self.mark :]
        self.mark += len(events)
        for raw in events:
            event = json.loads(json.dumps(raw))
            connect = event.get("account") is not None
            path = "/v1/webhooks/stripe/connect" if connect else "/v1/webhooks/stripe"
            r = await self.client.post(path, **self.signer.delivery(event, connect=connect))
            assert r.status_code == 200, r.text
        return len(events)


async def _ok(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    return body


async def _seed_party(
    world: World, side: str, party: Party, stripe: Deliverer, clock: FrozenClock
) -> None:
    client = world.client
    coach, mentee = world.headers("coach", side), world.headers("mentee", side)
    link = await _ok(await client.post("/v1/coaches/me/onboarding", json={}, headers=coach), 200)
    world.emulator.control("POST", f"accounts/{link['stripe_account_id']}/complete_onboarding")
    await stripe.flush()
    start = clock.now() + timedelta(days=3)
    for name in ("paid", "pending", "failed", "spare"):
        body = {
            "title": f"{side} {name}",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "price": 10000,
            "currency": "usd",
            "capacity": 5,
            "refund_window_hours": 24,
        }
        made = await _ok(await client.post("/v1/sessions", json=body, headers=coach), 201)
        party.sessions[name] = made["id"]
    for name in ("paid", "pending", "failed"):
        url = f"/v1/sessions/{party.sessions[name]}/bookings"
        booking = await _ok(await client.post(url, headers=mentee), 201)
        party.bookings[name] = booking["id"]
        if name != "pending":
            outcome = "succeeded" if name == "paid" else "failed"
            cs = booking["checkout_session_id"]
            world.emulator.control("POST", f"checkout/sessions/{cs}/pay", {"outcome": outcome})
    await stripe.flush()
    listed = await _ok(await client.get("/v1/bookings", headers=mentee), 200)
    states = {b["id"]: b["status"] for b in listed["upcoming"]}
    assert states == {
        party.bookings["paid"]: "paid",
        party.bookings["pending"]: "pending",
        party.bookings["failed"]: "failed",
    }, states


async def _ids(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT sub, id FROM users"))).all()
    return {str(sub): int(uid) for sub, uid in rows}


async def _tables(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' ORDER BY 1"
            )
        )
        return [str(t) for t in rows.scalars()]


async def _pay_out(world: World, stripe: Deliverer) -> None:
    """Release and transfer every earning (a job clock past the hold), then pay each coach's
    Connect balance out to their bank, so payouts and bank payouts exist for both sides."""
    later = FrozenClock(world.clock.now() + timedelta(days=10))
    # The app runs on the test client's own event loop (a portal thread): the job gets a
    # gateway and sessions of its own on this loop, or their pooled connections cross loops.
    gateway = StripeGateway.from_settings(world.settings)
    try:
        result = await run_cycle(
            session_factory(world.engine), gateway=gateway, clock=later, settings=world.settings
        )
    finally:
        await gateway.aclose()
    assert result.release.released == 2 and result.payouts.ran, result
    await stripe.flush()
    async with world.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT coach_id, id, status FROM payouts"))).all()
        accounts = dict(
            (
                await conn.execute(text("SELECT coach_id, stripe_account_id FROM connect_accounts"))
            ).all()
        )
    for party in (world.a, world.b):
        party.payout_ids = [int(r[1]) for r in rows if r[0] == party.coach_id]
        assert party.payout_ids, rows
        world.emulator.control("POST", f"accounts/{accounts[party.coach_id]}/payouts", {})
    await stripe.flush()


async def snapshot(world: World) -> dict[str, Any]:
    """Row counts of every table, every ledger account's balance, Stripe writes so far."""
    counts = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in world.tables)
    async with world.engine.connect() as conn:
        rows = (await conn.execute(text(counts))).all()
        balances = (
            await conn.execute(
                text(
                    "SELECT a.id, COALESCE(sum(s.balance), 0) FROM ledger_accounts a "
                    "LEFT JOIN ledger_balance_slots s ON s.account_id = a.id GROUP BY a.id"
                )
            )
        ).all()
    stats = world.emulator.control("GET", "stats")["requests"]
    return {
        "rows": {str(t): int(n) for t, n in rows},
        "balances": {int(a): int(b) for a, b in balances},
        "stripe_writes": {k: v for k, v in stats.items() if not k.startswith("GET ")},
    }


@pytest.fixture(scope="module")
def world_tokens(system_settings: Settings) -> Tokens:
    """Who signs the callers' tokens: coachpay (HS256) here, the provider in
    test_role_matrix_provider.py."""
    return Tokens(system_settings)


@pytest.fixture(scope="module")
async def world(
    system_settings: Settings, emulator: EmulatorServer, commit_db_url: str, world_tokens: Tokens
) -> AsyncIterator[World]:
    engine = create_engine(commit_db_url, pool_size=5)
    await truncate_all(engine)
    emulator.control("POST", "reset")
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    # Our own gateway: closing it after the client's loop is gone must not fail teardown.
    gateway = StripeGateway.from_settings(system_settings)
    runtime = Runtime(system_settings, clock=clock, gateway=gateway, webhook_processing="inline")
    await runtime.start()
    app = create_app(system_settings, runtime=runtime)
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        tokens = world_tokens
        w = World(
            client=client,
            engine=engine,
            tokens=tokens,
            emulator=emulator,
            settings=system_settings,
            clock=clock,
            a=Party(),
            b=Party(),
            user_ids={},
            tables=await _tables(engine),
        )
        # Provision everyone first: a forbidden call must not be the one that creates the user.
        for role, subs in SUBS.items():
            for sub in subs:
                r = await client.get("/v1/sessions", headers=tokens.headers(role, sub))
                assert r.status_code == 200, r.text
        w.user_ids = await _ids(engine)
        for side, party in (("a", w.a), ("b", w.b)):
            party.coach_id = w.user_ids[SUBS["coach"][0 if side == "a" else 1]]
            party.mentee_id = w.user_ids[SUBS["mentee"][0 if side == "a" else 1]]
            party.link_token = sign_link_token(
                party.coach_id, secret=TEST_JWT_SECRET, now=clock.now()
            )
        stripe = Deliverer(emulator, client)
        for side, party in (("a", w.a), ("b", w.b)):
            await _seed_party(w, side, party, stripe, clock)
        await _pay_out(w, stripe)
        yield w
    await runtime.stop()
    with contextlib.suppress(RuntimeError):
        await gateway.aclose()
    await engine.dispose()
