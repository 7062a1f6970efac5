# ruff: noqa: F811  (pytest fixtures imported from tests/api/conftest.py)
"""The admin routes: register, read, change, rotate, replay, the event list and the log.

Hostile input answers a clear 4xx and writes nothing (no endpoint, no audit row).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook

from api.runtime import Runtime
from core.clock import FrozenClock
from core.db import create_engine
from core.inbox import HandlerRegistry
from core.outbox.delivery import DeliveryConfig
from core.settings import Settings
from tests.api.conftest import (  # noqa: F401  (fixtures)
    Tokens,
    api_clock,
    api_settings,
    app,
    app_client,
    extra_routes,
    handler_registry,
    shared_app_client,
    tokens,
    webhook_processing,
)
from tests.outbox.conftest import LOCAL
from tests.outbox.helpers import drain, emit
from tests.outbox.receiver import Receiver

Client = AsyncTestClient[Litestar]
BASE = "/v1/admin/events"


@pytest.fixture
async def app_runtime(
    api_settings: Settings,
    api_clock: FrozenClock,
    handler_registry: HandlerRegistry,
    webhook_processing: str,
    clean_engine: AsyncEngine,
) -> AsyncIterator[Runtime]:
    """The app's runtime, allowing webhooks to 127.0.0.1 (COACHPAY_WEBHOOK_ALLOWED_NETWORKS)."""
    allowed = api_settings.model_copy(update={"webhook_allowed_networks": "127.0.0.1/32"})
    runtime = Runtime(
        allowed, clock=api_clock, registry=handler_registry, webhook_processing=webhook_processing
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture(scope="module")
async def commit_engine(commit_db_url: str) -> AsyncIterator[AsyncEngine]:
    """The committing database as the module's shared app sees it (never truncated here)."""
    eng = create_engine(commit_db_url, pool_size=2)
    yield eng
    await eng.dispose()


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        eps = (await conn.execute(text("SELECT count(*) FROM outbox_endpoints"))).scalar_one()
        audit = (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
    return int(eps), int(audit)


async def _create(client: Client, tokens: Tokens, **body: Any) -> dict[str, Any]:
    body.setdefault("url", "http://127.0.0.1:9/hooks")
    r = await client.post(f"{BASE}/endpoints", json=body, headers=tokens.headers("admin"))
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def test_register_shows_the_secret_once_and_never_again(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    made = await _create(app_client, tokens, event_types=["booking.paid", "booking.cancelled"])
    secret, ep = made["secret"], made["endpoint"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert ep["enabled"] and ep["ordered"] and ep["event_types"] == [
        "booking.cancelled", "booking.paid",
    ]  # fmt: skip
    admin = tokens.headers("admin")
    for path in (f"{BASE}/endpoints", f"{BASE}/endpoints/{ep['id']}"):
        r = await app_client.get(path, headers=admin)
        assert r.status_code == 200 and secret not in r.text and '"secret"' not in r.text
    async with clean_engine.connect() as conn:
        audit = (await conn.execute(text("SELECT action, after::text FROM audit_log"))).all()
    assert [a for a, _ in audit] == ["webhook_endpoint.created"]
    assert secret not in audit[0][1]


@pytest.mark.parametrize("role", ["mentee", "coach", "finance"])
async def test_only_admins(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, role: str
) -> None:
    body = {"url": "http://127.0.0.1:9/hooks"}
    r = await app_client.post(f"{BASE}/endpoints", json=body, headers=tokens.headers(role))
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    assert (await app_client.get(BASE, headers=tokens.headers(role))).status_code == 403
    assert (await app_client.post(f"{BASE}/endpoints", json=body)).status_code == 401
    assert await _counts(clean_engine) == (0, 0)


HOSTILE: list[tuple[Any, str]] = [
    ({}, "url"),
    ({"url": 123}, "str"),
    ({"url": "ftp://files.example.com/x"}, "scheme"),
    ({"url": "http://127.0.0.2/"}, "loopback"),  # the allow list is 127.0.0.1 only
    ({"url": "https://10.1.2.3/hooks"}, "private"),
    ({"url": "https://[::1]/hooks"}, "loopback"),
    ({"url": "https://[::ffff:10.0.0.1]/hooks"}, "private"),
    ({"url": "https://169.254.169.254/latest/meta-data"}, "link-local"),
    ({"url": "https://[fe80::1]/"}, "link-local"),
    ({"url": "https://224.0.0.1/"}, "multicast"),
    ({"url": "https://0.0.0.0/"}, "unspecified"),
    ({"url": "https://100.64.0.1/"}, "CGNAT"),
    ({"url": "https://admin:pw@8.8.8.8/"}, "credentials"),
    ({"url": "https://8.8.8.8/x#frag"}, "fragment"),
    ({"url": "http://8.8.8.8/x"}, "https"),  # plain http only inside the allow list
    ({"url": "https://hooks.invalid/x"}, "resolve"),
    ({"url": "https://8.8.8.8/" + "x" * 3000}, "2048"),
    ({"url": "https://8.8.8.8/\u0000"}, "control"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["booking.exploded"]}, "unknown"),
    ({"url": "http://127.0.0.1:9/", "event_types": []}, "length"),
    ({"url": "http://127.0.0.1:9/", "event_types": "booking.paid"}, "array"),
    ({"url": "http://127.0.0.1:9/", "event_types": [["booking.paid"]]}, "str"),
    ({"url": "http://127.0.0.1:9/", "enabled": "yes"}, "bool"),
    ({"url": "http://127.0.0.1:9/", "description": "a\u0007b"}, "control"),
    ({"url": "http://127.0.0.1:9/", "description": "x" * 501}, "500"),
    ({"url": "http://127.0.0.1:9/", "secret": "whsec_mine"}, "unknown field"),
    (["http://127.0.0.1:9/"], "object"),
]


@pytest.mark.parametrize(("body", "hint"), HOSTILE, ids=[h for _, h in HOSTILE])
async def test_hostile_registrations_are_refused_and_write_nothing(
    shared_app_client: Client, commit_engine: AsyncEngine, tokens: Tokens, body: Any, hint: str
) -> None:
    before = await _counts(commit_engine)
    admin = tokens.headers("admin")
    r = await shared_app_client.post(f"{BASE}/endpoints", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert hint.lower() in r.json()["detail"].lower(), r.json()
    assert await _counts(commit_engine) == before


async def test_malformed_and_oversized_bodies(
    shared_app_client: Client, commit_engine: AsyncEngine, tokens: Tokens
) -> None:
    before = await _counts(commit_engine)
    admin = {**tokens.headers("admin"), "Content-Type": "application/json"}
    url = f"{BASE}/endpoints"
    r = await shared_app_client.post(url, content=b"{nope", headers=admin)
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = await shared_app_client.post(url, content=b"", headers=admin)
    assert r.status_code == 422
    big = json.dumps({"url": "http://127.0.0.1:9/", "description": "x" * 20_000}).encode()
    r = await shared_app_client.post(url, content=big, headers=admin)
    assert r.status_code == 413
    assert await _counts(commit_engine) == before


async def test_patch_rotate_and_their_bad_input(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: Any
) -> None:
    made = await _create(app_client, tokens)
    url = f"{BASE}/endpoints/{made['endpoint']['id']}"
    admin = tokens.headers("admin")
    before = await _counts(clean_engine)
    for body in ({}, {"url": "https://10.0.0.1/"}, {"ordered": 1}, {"nope": True},
                 {"event_types": ["*", "x"]}):  # fmt: skip
        r = await app_client.patch(url, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
    for body in ({"overlap_hours": -1}, {"overlap_hours": 169}, {"overlap_hours": "24"}):
        r = await app_client.post(f"{url}/rotate-secret", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
    assert (await app_client.patch(f"{BASE}/endpoints/999", json={"enabled": False},
                                   headers=admin)).status_code == 404  # fmt: skip
    assert await _counts(clean_engine) == before
    r = await app_client.patch(url, json={"enabled": False, "ordered": False}, headers=admin)
    assert r.status_code == 200 and not r.json()["enabled"] and not r.json()["ordered"]
    assert r.json()["disabled_reason"] == "disabled by an admin"
    r = await app_client.patch(url, json={"enabled": True}, headers=admin)
    assert r.json()["enabled"] and r.json()["disabled_reason"] is None
    r = await app_client.post(f"{url}/rotate-secret", json={"overlap_hours": 6}, headers=admin)
    assert r.status_code == 200 and r.json()["secret"] != made["secret"]
    expires = r.json()["endpoint"]["previous_secret_expires_at"]
    assert expires.startswith((api_clock.now() + timedelta(hours=6)).isoformat()[:16])
    r = await app_client.post(f"{url}/rotate-secret", headers=admin)  # no body: 24 h
    assert r.status_code == 200


async def test_events_list_replay_log_and_health(
    app_client: Client,
    tokens: Tokens,
    clean_engine: AsyncEngine,
    app_runtime: Runtime,
    api_clock: Any,
) -> None:
    receiver = Receiver().start()
    try:
        made = await _create(app_client, tokens, url=receiver.url)
        receiver.secret = made["secret"]
        admin = tokens.headers("admin")
        r = await app_client.get(BASE, params={"after": "latest"}, headers=admin)
        start = r.json()["next_cursor"]
        assert r.json()["data"] == []
        factory = app_runtime.context.factory
        await emit(factory, api_clock.now(), 3)
        await emit(factory, api_clock.now(), 1, type="payout.paid")
        config = DeliveryConfig(allowed=LOCAL)
        await drain(factory, api_clock, config)
        r = await app_client.get(BASE, params={"after": start, "limit": "2"}, headers=admin)
        page = r.json()
        assert [e["type"] for e in page["data"]] == ["booking.paid", "booking.paid"]
        r = await app_client.get(BASE, params={"after": page["next_cursor"]}, headers=admin)
        assert [e["type"] for e in r.json()["data"]] == ["booking.paid", "payout.paid"]
        r = await app_client.get(BASE, params={"type": "payout.paid"}, headers=admin)
        (payout,) = r.json()["data"]
        r = await app_client.get(f"{BASE}/{payout['id']}", headers=admin)
        assert r.status_code == 200 and r.json() == payout
        for params in ({"after": "x.y"}, {"limit": "0"}, {"limit": "501"}, {"type": "nope"}):
            assert (await app_client.get(BASE, params=params, headers=admin)).status_code == 422
        assert (await app_client.get(f"{BASE}/evt_{'0' * 32}", headers=admin)).status_code == 404

        ep = f"{BASE}/endpoints/{made['endpoint']['id']}"
        r = await app_client.get(f"{ep}/attempts", params={"limit": "3"}, headers=admin)
        log = r.json()
        assert len(log["data"]) == 3 and log["next_cursor"]
        assert {a["status_code"] for a in log["data"]} == {200}
        bad = ({}, {"event_id": payout["id"], "to": "2026-01-01T00:00:00Z"},
               {"from": "2026-01-02T00:00:00", "to": "2026-01-03T00:00:00"},
               {"from": "2026-01-03T00:00:00Z", "to": "2026-01-02T00:00:00Z"})  # fmt: skip
        for body in bad:
            assert (
                await app_client.post(f"{ep}/replay", json=body, headers=admin)
            ).status_code == 422
        r = await app_client.post(f"{ep}/replay", json={"event_id": "evt_nope"}, headers=admin)
        assert r.status_code == 404
        r = await app_client.post(f"{ep}/replay", json={"event_id": payout["id"]}, headers=admin)
        assert r.status_code == 202 and r.json() == {"queued": 1}
        await drain(factory, api_clock, config)
        replayed = receiver.requests[-1]
        assert replayed.headers["webhook-id"] == payout["id"]
        assert (
            Webhook(made["secret"]).verify(replayed.body, replayed.headers)["type"] == "payout.paid"
        )
        assert len(receiver.effects) == 4  # the replay's effect was already there

        r = await app_client.get(f"{BASE}/health", headers=admin)
        h = r.json()
        assert h["endpoints"] == 1 and h["failing"] == 0 and h["delivered_24h"] == 5
        assert h["pending"] == 0 and h["disable_after_days"] == 5
        types = (await app_client.get(f"{BASE}/types", headers=admin)).json()
        assert types["api_version"] == "2026-12-01" and "booking.paid" in types["types"]
    finally:
        receiver.stop()
