"""Helpers for tests/api/test_bookings_http.py: one app + emulator for the module.

The database is not truncated between tests (that is what makes the module
fast): every test makes its own coach, mentees and sessions, and checks what
it wrote by booking id, or compares whole-table snapshots taken around a
request that must write nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from emulator.server import EmulatorServer
from tests.api.conftest import StripeSigner, Tokens

Client = AsyncTestClient[Litestar]
Headers = dict[str, str]
_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_seq)}"


class Stripe:
    """Drives the emulator and delivers its new events to the app, signed, like the Stripe CLI."""

    def __init__(self, emulator: EmulatorServer, client: Client, signer: StripeSigner) -> None:
        self.emulator, self.client, self.signer = emulator, client, signer
        self.mark = len(emulator.state.events)

    async def flush(self) -> list[str]:
        """Deliver every event made since the last flush; returns their types."""
        with self.emulator.state.lock:
            raw = list(self.emulator.state.events.values())[self.mark :]
        self.mark += len(raw)
        events = [json.loads(json.dumps(e)) for e in raw]
        for event in events:
            connect = event.get("account") is not None
            path = "/v1/webhooks/stripe/connect" if connect else "/v1/webhooks/stripe"
            r = await self.client.post(path, **self.signer.delivery(event, connect=connect))
            assert r.status_code == 200, r.text
        return [e["type"] for e in events]

    async def pay(self, checkout_session_id: str, outcome: str = "succeeded") -> list[str]:
        self.emulator.control(
            "POST", f"checkout/sessions/{checkout_session_id}/pay", {"outcome": outcome}
        )
        return await self.flush()

    def checkout(self, checkout_session_id: str) -> dict[str, Any]:
        with self.emulator.state.lock:
            return json.loads(
                json.dumps(self.emulator.state.checkout_sessions[checkout_session_id])
            )

    def pi_settings(self, checkout_session_id: str) -> dict[str, Any]:
        """What the Checkout Session will put on its PaymentIntent (payment_intent_data)."""
        with self.emulator.state.lock:
            found = self.emulator.state.private[checkout_session_id]["payment_intent_data"]
            return json.loads(json.dumps(found))

    def refunds_of(self, payment_intent_id: str) -> list[dict[str, Any]]:
        with self.emulator.state.lock:
            return [
                dict(r)
                for r in self.emulator.state.refunds.values()
                if r.get("payment_intent") == payment_intent_id
            ]


@contextlib.contextmanager
def shifted(clock: FrozenClock, delta: timedelta) -> Iterator[None]:
    """Move the app's clock for the block only (the module shares one clock)."""
    start = clock.now()
    clock.set(start + delta)
    try:
        yield
    finally:
        clock.set(start)


async def onboard_coach(client: Client, stripe: Stripe, tokens: Tokens) -> Headers:
    headers = tokens.headers("coach", unique("coach"))
    r = await client.post("/v1/coaches/me/onboarding", json={}, headers=headers)
    assert r.status_code == 200, r.text
    stripe.emulator.control("POST", f"accounts/{r.json()['stripe_account_id']}/complete_onboarding")
    await stripe.flush()
    return headers


async def publish(
    client: Client, coach: Headers, clock: FrozenClock, *, days: float = 3, **kw: Any
) -> dict[str, Any]:
    start = clock.now() + timedelta(days=days)
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
    r = await client.post("/v1/sessions", json=body, headers=coach)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def mentee(tokens: Tokens) -> Headers:
    return tokens.headers("mentee", unique("mentee"))


async def book(client: Client, session_id: int, headers: Headers) -> dict[str, Any]:
    r = await client.post(f"/v1/sessions/{session_id}/bookings", headers=headers)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def paid_booking(
    client: Client, stripe: Stripe, session_id: int, headers: Headers
) -> dict[str, Any]:
    b = await book(client, session_id, headers)
    await stripe.pay(b["checkout_session_id"])
    row = await booking_row(stripe.client, b["id"], headers)
    assert row["status"] == "paid", row
    return row


async def booking_row(client: Client, booking_id: int, headers: Headers) -> dict[str, Any]:
    """The booking as its mentee sees it in GET /v1/bookings."""
    r = await client.get("/v1/bookings", headers=headers)
    assert r.status_code == 200, r.text
    for b in r.json()["upcoming"] + r.json()["past"]:
        if b["id"] == booking_id:
            return dict(b)
    raise AssertionError(f"booking {booking_id} not listed")


async def user_id(engine: AsyncEngine, headers: Headers) -> int:
    """The users.id behind a bearer token (provisioned on its first request)."""
    token = headers["Authorization"].removeprefix("Bearer ")
    sub = jwt.decode(token, options={"verify_signature": False})["sub"]
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT id FROM users WHERE sub = :s"), {"s": sub})
        return int(found.scalar_one())


async def audit(engine: AsyncEngine, booking_id: int) -> list[tuple[Any, ...]]:
    """(from, to, actor_kind, actor_user_id, cause) of each booking_events row, in order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT from_status, to_status, actor_kind, actor_user_id, cause "
                "FROM booking_events WHERE booking_id = :b ORDER BY at, id"
            ),
            {"b": booking_id},
        )
        return [tuple(r) for r in rows]


_TABLES = (
    "bookings",
    "booking_events",
    "refunds",
    "refund_intents",
    "ledger_transactions",
    "ledger_entries",
)


async def snapshot(engine: AsyncEngine, stripe: Stripe) -> dict[str, Any]:
    """Everything a refused request must leave alone: our rows and Stripe's objects."""
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for table in _TABLES:
            out[table] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
        out["booking_rows"] = [
            tuple(r)
            for r in await conn.execute(
                text(
                    "SELECT id, status, attempt, checkout_session_id, amount_refunded, "
                    "hold_expires_at FROM bookings ORDER BY id"
                )
            )
        ]
    with stripe.emulator.state.lock:
        state = stripe.emulator.state
        out["stripe_sessions"] = sorted(
            (cs["id"], cs["status"]) for cs in state.checkout_sessions.values()
        )
        out["stripe_refunds"] = len(state.refunds)
    return out
