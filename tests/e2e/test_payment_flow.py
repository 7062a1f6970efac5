# ruff: noqa: F811  (pytest fixtures imported from tests/api/conftest.py)
"""End to end through the HTTP API and the in-process Stripe emulator.

The emulator keeps its events (no webhook URL); the test delivers each one to
the app's webhook endpoints, signed as Stripe would, like the Stripe CLI does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.runtime import Runtime
from core.clock import FrozenClock
from core.inbox import HandlerRegistry
from core.settings import Settings, load_settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from tests.api.conftest import (  # noqa: F401  (fixtures)
    CONNECT_SECRET,
    PLATFORM_SECRET,
    TEST_JWT_SECRET,
    StripeSigner,
    Tokens,
    api_clock,
    app,
    app_client,
    extra_routes,
    handler_registry,
    stripe_signer,
    tokens,
    webhook_processing,
)

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(seed=5).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_emulator(emulator: EmulatorServer) -> None:
    # The database is truncated per test (ids restart at 1), so Stripe must
    # forget the idempotency keys derived from those ids too.
    emulator.control("POST", "reset")


@pytest.fixture
def api_settings(commit_db_url: str, emulator: EmulatorServer) -> Settings:
    return load_settings(
        database_url=commit_db_url,
        stripe_secret_key="sk_test_e2e",
        stripe_api_base=emulator.base_url,
        stripe_max_retries=0,
        stripe_timeout_seconds=10,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://testserver.local",
        run_jobs=False,
        db_pool_size=5,
        platform_fee_bps=2000,
    )


@pytest.fixture
async def app_runtime(
    api_settings: Settings,
    api_clock: FrozenClock,
    handler_registry: HandlerRegistry,
    clean_engine: AsyncEngine,
) -> AsyncIterator[Runtime]:
    # Our own gateway: its pooled connections belong to the test client's event
    # loop, which is gone at teardown, so closing it must not fail the test.
    gateway = StripeGateway.from_settings(api_settings)
    runtime = Runtime(
        api_settings,
        clock=api_clock,
        gateway=gateway,
        registry=handler_registry,
        webhook_processing="inline",
    )
    await runtime.start()
    yield runtime
    await runtime.stop()
    with contextlib.suppress(RuntimeError):
        await gateway.aclose()


class Stripe:
    """Drives the emulator and delivers its new events to the app."""

    def __init__(self, emulator: EmulatorServer, client: Client, signer: StripeSigner) -> None:
        self.emulator, self.client, self.signer = emulator, client, signer
        self.mark = len(emulator.state.events)

    def new_events(self) -> list[dict[str, Any]]:
        with self.emulator.state.lock:
            events = list(self.emulator.state.events.values())[self.mark :]
        self.mark += len(events)
        return [json.loads(json.dumps(e)) for e in events]

    async def deliver(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            connect = event.get("account") is not None
            path = "/v1/webhooks/stripe/connect" if connect else "/v1/webhooks/stripe"
            r = await self.client.post(path, **self.signer.delivery(event, connect=connect))
            assert r.status_code == 200, r.text

    async def flush(self) -> list[dict[str, Any]]:
        events = self.new_events()
        await self.deliver(events)
        return events


async def onboard_coach(client: Client, stripe: Stripe, tokens: Tokens, sub: str) -> dict[str, str]:
    headers = tokens.headers("coach", sub)
    r = await client.post("/v1/coaches/me/onboarding", json={}, headers=headers)
    assert r.status_code == 200, r.text
    stripe.emulator.control("POST", f"accounts/{r.json()['stripe_account_id']}/complete_onboarding")
    await stripe.flush()
    return headers


async def publish(client: Client, headers: dict[str, str], clock: Any, **kw: Any) -> dict[str, Any]:
    start = clock.now() + timedelta(days=3)
    body = {
        "title": "Interview practice",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "price": 10000,
        "currency": "usd",
        "capacity": 3,
        "refund_window_hours": 24,
        **kw,
    }
    r = await client.post("/v1/sessions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def sums(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT a.owner_type || '/' || a.kind, COALESCE(SUM(s.balance), 0) "
                "FROM ledger_accounts a JOIN ledger_balance_slots s ON s.account_id = a.id "
                "GROUP BY 1"
            )
        )
        return {r[0]: int(r[1]) for r in rows}


async def test_onboard_publish_book_pay_webhook(
    app_client: Client,
    emulator: EmulatorServer,
    stripe_signer: StripeSigner,
    tokens: Tokens,
    api_clock: Any,
    clean_engine: AsyncEngine,
) -> None:
    stripe = Stripe(emulator, app_client, stripe_signer)
    coach = await onboard_coach(app_client, stripe, tokens, "coach-e2e")
    session = await publish(app_client, coach, api_clock)
    mentee = tokens.headers("mentee", "mentee-e2e")
    r = await app_client.post(f"/v1/sessions/{session['id']}/bookings", headers=mentee)
    assert r.status_code == 201, r.text
    booking = r.json()
    assert booking["status"] == "pending" and booking["checkout_url"]
    emulator.control(
        "POST", f"checkout/sessions/{booking['checkout_session_id']}/pay", {"outcome": "succeeded"}
    )
    await stripe.flush()

    r = await app_client.get("/v1/bookings", headers=mentee)
    assert [b["status"] for b in r.json()["upcoming"]] == ["paid"]
    balances = await sums(clean_engine)
    # gross = fee + share exactly; Stripe's 320 in its own transaction; trial balance 0.
    assert balances["platform/fee_revenue"] == -2000
    assert balances["coach/pending"] == -8000
    assert balances["platform/processing_fees"] == 320
    assert balances["platform/stripe_balance"] == 10000 - 320
    assert sum(balances.values()) == 0
    async with clean_engine.connect() as conn:
        types = (await conn.execute(text("SELECT type FROM ledger_transactions"))).scalars().all()
    assert sorted(types) == ["processing_fee", "session_payment"]
    # The session shows the seat taken.
    r = await app_client.get(f"/v1/sessions/{session['id']}", headers=mentee)
    assert r.json()["seats_taken"] == 1 and r.json()["seats_left"] == 2


async def test_race_for_last_seat_and_late_payment_refunded(
    app_client: Client,
    emulator: EmulatorServer,
    stripe_signer: StripeSigner,
    tokens: Tokens,
    api_clock: Any,
    clean_engine: AsyncEngine,
) -> None:
    import asyncio

    stripe = Stripe(emulator, app_client, stripe_signer)
    coach = await onboard_coach(app_client, stripe, tokens, "coach-race")
    session = await publish(app_client, coach, api_clock, capacity=1)
    url = f"/v1/sessions/{session['id']}/bookings"
    mentees = [tokens.headers("mentee", f"racer-{i}") for i in range(20)]
    for h in mentees:  # provision first, so the race is only about the seat
        assert (await app_client.get("/v1/bookings", headers=h)).status_code == 200
    answers = await asyncio.gather(*(app_client.post(url, headers=h) for h in mentees))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [409] * 19, codes
    winner = next(r.json() for r in answers if r.status_code == 201)

    # The winner's checkout lapses on our side; someone else takes the seat and pays.
    api_clock.advance(timedelta(minutes=40))
    other = tokens.headers("mentee", "racer-late-taker")
    r = await app_client.post(url, headers=other)
    assert r.status_code == 201, r.text
    taker = r.json()
    emulator.control("POST", f"checkout/sessions/{taker['checkout_session_id']}/pay", {})
    await stripe.flush()
    # Now the winner pays their still-open Checkout Session: the seat is gone.
    emulator.control("POST", f"checkout/sessions/{winner['checkout_session_id']}/pay", {})
    await stripe.flush()

    async with clean_engine.connect() as conn:
        rows = dict(
            (await conn.execute(text("SELECT id, status FROM bookings"))).all()  # type: ignore[arg-type]
        )
        causes = (
            (
                await conn.execute(
                    text("SELECT cause FROM booking_events WHERE booking_id = :b"),
                    {"b": winner["id"]},
                )
            )
            .scalars()
            .all()
        )
        refunds = (
            await conn.execute(text("SELECT stripe_refund_id, amount, source FROM refunds"))
        ).all()
    assert rows[taker["id"]] == "paid"
    assert rows[winner["id"]] == "refunded"
    assert "auto_refund:seat_taken" in causes
    assert len(refunds) == 1 and refunds[0][1] == 10000 and refunds[0][2] == "auto"
    assert refunds[0][0] in emulator.state.refunds  # refunded at Stripe too
    balances = await sums(clean_engine)
    assert sum(balances.values()) == 0
    assert balances["coach/pending"] == -8000  # only the honoured payment
    assert balances["platform/fee_revenue"] == -2000
    assert balances["platform/processing_fees"] == 640  # Stripe keeps both fees
