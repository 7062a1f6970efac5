"""Bad input on the sessions and bookings endpoints: 422 naming the field, nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import Tokens

START = datetime.now(UTC) + timedelta(days=5)
GOOD: dict[str, Any] = {
    "title": "Mock interview",
    "starts_at": START.isoformat(),
    "ends_at": (START + timedelta(hours=1)).isoformat(),
    "price": 5000,
    "currency": "usd",
    "capacity": 4,
    "refund_window_hours": 24,
}
PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()

CASES = [
    ("title", {"title": None}, "missing"),
    ("title", {"title": ""}, None),
    ("title", {"title": "x" * 201}, None),
    ("title", {"title": 42}, None),
    ("price", {"price": -1}, None),
    ("price", {"price": 0}, None),
    ("price", {"price": 49}, None),  # below Stripe's minimum charge (USD 0.50)
    ("price", {"price": 29, "currency": "gbp"}, None),
    ("price", {"price": 49, "currency": "jpy"}, None),
    ("price", {"price": "100"}, None),
    ("price", {"price": 10**12}, None),
    ("price", {"price": 1.5}, None),
    ("price", {"price": None}, "missing"),
    ("currency", {"currency": "dollars"}, None),
    ("currency", {"currency": "xyz"}, None),
    ("capacity", {"capacity": 0}, None),
    ("capacity", {"capacity": -3}, None),
    ("capacity", {"capacity": "many"}, None),
    ("refund_window_hours", {"refund_window_hours": -1}, None),
    ("starts_at", {"starts_at": PAST}, None),
    ("starts_at", {"starts_at": "tomorrow"}, None),
    ("starts_at", {"starts_at": "2030-01-01T10:00:00"}, None),  # no time zone
    ("ends_at", {"ends_at": GOOD["starts_at"]}, None),
    ("description", {"description": "d" * 5001}, None),
]


@pytest.mark.parametrize(("field", "change", "mode"), CASES)
async def test_create_session_bad_input(
    app_client: AsyncTestClient[Litestar],
    tokens: Tokens,
    clean_engine: AsyncEngine,
    field: str,
    change: dict[str, Any],
    mode: str | None,
) -> None:
    body = {**GOOD, **change}
    if mode == "missing":
        body.pop(field)
    r = await app_client.post("/v1/sessions", json=body, headers=tokens.headers("coach"))
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    async with clean_engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM coaching_sessions"))).scalar_one()
    assert n == 0


@pytest.mark.parametrize("amount", [-1, 0, "10", 10**16, 1.5, True])
async def test_refund_bad_amount(
    app_client: AsyncTestClient[Litestar], tokens: Tokens, clean_engine: AsyncEngine, amount: Any
) -> None:
    r = await app_client.post(
        "/v1/bookings/1/refund", json={"amount": amount}, headers=tokens.headers("admin")
    )
    assert r.status_code == 422, r.text
    assert "amount" in r.json()["detail"]
    async with clean_engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM refunds"))).scalar_one()
    assert n == 0


async def test_mentee_cannot_publish_and_coach_cannot_book(
    app_client: AsyncTestClient[Litestar], tokens: Tokens
) -> None:
    r = await app_client.post("/v1/sessions", json=GOOD, headers=tokens.headers("mentee"))
    assert r.status_code == 403
    r = await app_client.post("/v1/sessions/1/bookings", headers=tokens.headers("coach"))
    assert r.status_code == 403
    r = await app_client.post("/v1/sessions/999/bookings", headers=tokens.headers("mentee"))
    assert r.status_code == 404


async def test_coach_without_stripe_account_cannot_publish(
    app_client: AsyncTestClient[Litestar], tokens: Tokens
) -> None:
    r = await app_client.post("/v1/sessions", json=GOOD, headers=tokens.headers("coach"))
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "CoachCannotTakeCharges"
