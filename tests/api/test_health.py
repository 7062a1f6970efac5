"""GET /health, /schema, request ids."""

from __future__ import annotations

from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.runtime import Runtime
from core.settings import Settings

BALANCE = {"object": "balance", "available": [{"amount": 0, "currency": "usd"}], "pending": []}


async def test_health_ok_with_stripe_reachable(
    app_client: AsyncTestClient[Litestar], stripe_mock: Any
) -> None:
    route = stripe_mock.get("/v1/balance").mock(return_value=httpx.Response(200, json=BALANCE))
    first = await app_client.get("/health")
    second = await app_client.get("/health")
    assert first.status_code == 200
    assert first.json() == {"status": "ok", "database": "ok", "stripe": "ok"}
    assert second.json()["stripe"] == "ok"
    assert route.call_count == 1  # the probe is cached


async def test_health_stripe_unreachable_is_still_200(
    app_client: AsyncTestClient[Litestar], stripe_mock: Any
) -> None:
    stripe_mock.get("/v1/balance").mock(side_effect=httpx.ConnectError("down"))
    resp = await app_client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "database": "ok", "stripe": "unreachable"}


async def test_health_503_when_database_down(api_settings: Settings, stripe_mock: Any) -> None:
    stripe_mock.get("/v1/balance").mock(return_value=httpx.Response(200, json=BALANCE))
    # A port where nothing listens: the engine is built lazily, so start() succeeds.
    settings = api_settings.model_copy(
        update={"database_url": "postgresql://postgres@127.0.0.1:1/nothing"}
    )
    runtime = Runtime(settings)
    async with AsyncTestClient(app=create_app(settings, runtime=runtime, stop_runtime=True)) as c:
        resp = await c.get("/health")
    assert resp.status_code == 503
    assert resp.json()["database"] == "unavailable"
    assert resp.json()["stripe"] == "ok"


async def test_schema_is_served(app_client: AsyncTestClient[Litestar]) -> None:
    resp = await app_client.get("/schema/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/health" in paths and "/v1/webhooks/stripe" in paths
    ui = await app_client.get("/schema")
    assert ui.status_code == 200


async def test_schema_declares_the_real_error_responses(
    app_client: AsyncTestClient[Litestar],
) -> None:
    doc = (await app_client.get("/schema/openapi.json")).json()
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
    refund = doc["paths"]["/v1/bookings/{booking_id}/refund"]["post"]["responses"]
    for code in ("401", "403", "404", "409", "413", "422", "503"):
        schema = refund[code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, code
    # Only what the route can answer: its body is decoded by hand (a bad one is a 422).
    assert "400" not in refund and "502" not in refund
    # Public routes are left as they are.
    assert "401" not in doc["paths"]["/health"]["get"]["responses"]


async def test_request_id_echoed_or_generated(app_client: AsyncTestClient[Litestar]) -> None:
    given = await app_client.get("/nope", headers={"X-Request-ID": "req-123"})
    assert given.headers["x-request-id"] == "req-123"
    made = await app_client.get("/nope", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] not in ("", "bad id with spaces")
    assert len(made.headers["x-request-id"]) == 32
