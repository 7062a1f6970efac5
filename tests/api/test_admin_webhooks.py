"""GET /v1/admin/webhooks/failed and POST /v1/admin/webhooks/{event_id}/replay: admin only,
paged newest first, secrets kept out, a replay processed once more by the retry job."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.runtime import Runtime
from core.audit import AuditEntry
from core.clock import FrozenClock
from core.inbox import MAX_HANDLER_FAILURES, HandlerContext, HandlerRegistry, process_due
from core.stripe_types import StripeEvent
from ledger.reports import encode_cursor
from tests.api.conftest import StripeSigner, Tokens

Client = AsyncTestClient[Litestar]
URL = "/v1/admin/webhooks/failed"


async def _insert(
    engine: AsyncEngine,
    event_id: str,
    *,
    status: str = "parked",
    last: datetime,
    error: str = "KeyError: 'charge'",
) -> None:
    parked = last if status == "parked" else None
    due = last + timedelta(minutes=5) if status == "failed" else None
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO webhook_events (stripe_event_id, endpoint, type, payload, "
                "received_at, status, attempts, handler_failures, last_error, next_attempt_at, "
                "first_attempt_at, last_attempt_at, failing_since, parked_at) VALUES "
                "(:e, 'platform', 'refund.created', '{}'::jsonb, :first, :s, 8, 8, :err, :due, "
                ":first, :last, :first, :parked)"
            ),
            {
                "e": event_id,
                "s": status,
                "err": error,
                "due": due,
                "first": last - timedelta(hours=1),
                "last": last,
                "parked": parked,
            },
        )


async def test_admin_pages_parked_events_newest_first_without_secrets(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: FrozenClock
) -> None:
    now = api_clock.now()
    leak = "AuthenticationError: Invalid API Key provided: sk_live_51Habc123 " + "x" * 1000
    for i in range(3):
        await _insert(
            clean_engine, f"evt_parked_{i}", last=now - timedelta(hours=3 - i), error=leak
        )
    await _insert(clean_engine, "evt_retrying", status="failed", last=now)
    await _insert(clean_engine, "evt_done", status="processed", last=now)
    admin = tokens.headers("admin")
    first = await app_client.get(URL, params={"limit": "2"}, headers=admin)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [e["event_id"] for e in body["data"]] == ["evt_parked_2", "evt_parked_1"]
    assert body["parked"] == 3 and body["next_cursor"]
    item = body["data"][0]
    assert item["type"] == "refund.created" and item["attempts"] == 8
    assert item["status"] == "parked" and item["first_attempt_at"] and item["last_attempt_at"]
    assert "51Habc123" not in item["last_error"] and len(item["last_error"]) <= 300
    rest = await app_client.get(URL, params={"cursor": body["next_cursor"]}, headers=admin)
    assert [e["event_id"] for e in rest.json()["data"]] == ["evt_parked_0"]
    assert rest.json()["next_cursor"] is None
    retrying = await app_client.get(URL, params={"state": "retrying"}, headers=admin)
    assert [e["event_id"] for e in retrying.json()["data"]] == ["evt_retrying"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "²"},
        {"cursor": "not-a-cursor"},
        {"cursor": encode_cursor(datetime(2026, 1, 1).astimezone(), "x1")},
        {"state": "processed"},
        {"state": "x" * 50},
    ],
)
async def test_bad_list_input_is_a_422(
    shared_app_client: Client, tokens: Tokens, params: dict[str, str]
) -> None:
    r = await shared_app_client.get(URL, params=params, headers=tokens.headers("admin"))
    assert r.status_code in (400, 422), r.text
    assert {"error", "detail"} <= r.json().keys()


@pytest.mark.parametrize("role", ["mentee", "coach", "finance", None])
async def test_only_an_admin_lists_or_replays(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: FrozenClock, role: Any
) -> None:
    await _insert(clean_engine, "evt_parked_x", last=api_clock.now())
    headers = tokens.headers(role) if role else {}
    wanted = 401 if role is None else 403
    assert (await app_client.get(URL, headers=headers)).status_code == wanted
    r = await app_client.post("/v1/admin/webhooks/evt_parked_x/replay", headers=headers)
    assert r.status_code == wanted
    async with clean_engine.connect() as conn:
        status = await conn.scalar(text("SELECT status FROM webhook_events"))
    assert status == "parked"


async def test_replay_answers_and_audits_and_is_idempotent(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: FrozenClock
) -> None:
    await _insert(clean_engine, "evt_parked_r", last=api_clock.now())
    await _insert(clean_engine, "evt_done", status="processed", last=api_clock.now())
    admin = tokens.headers("admin")
    r = await app_client.post("/v1/admin/webhooks/evt_parked_r/replay", headers=admin)
    assert r.status_code == 202, r.text
    assert r.json()["replayed"] is True
    assert r.json()["event"]["status"] == "pending" and r.json()["event"]["replays"] == 1
    again = await app_client.post("/v1/admin/webhooks/evt_parked_r/replay", headers=admin)
    assert again.status_code == 202 and again.json()["replayed"] is False
    done = await app_client.post("/v1/admin/webhooks/evt_done/replay", headers=admin)
    assert done.status_code == 409 and done.json()["error"] == "WebhookEventNotReplayable"
    for missing in ("evt_nope", "evt-../x", "evt_" + "a" * 300, "%00"):
        r = await app_client.post(f"/v1/admin/webhooks/{missing}/replay", headers=admin)
        assert r.status_code == 404, (missing, r.text)
    async with clean_engine.connect() as conn:
        audited = (
            await conn.execute(
                select(AuditEntry.actor_kind, AuditEntry.actor_user_id, func.count())
                .where(AuditEntry.action == "webhook.replay")
                .group_by(AuditEntry.actor_kind, AuditEntry.actor_user_id)
            )
        ).all()
    assert len(audited) == 1 and audited[0][0] == "user" and audited[0][1] and audited[0][2] == 1


async def test_a_poison_delivery_is_parked_then_replayed_and_processed_once(
    app_client: Client,
    tokens: Tokens,
    stripe_signer: StripeSigner,
    handler_registry: HandlerRegistry,
    app_runtime: Runtime,
    api_clock: FrozenClock,
) -> None:
    """Through the real endpoint (inline processing) and the retry job."""
    effects: list[str] = []
    fixed = False

    async def handler(db: AsyncSession, event: StripeEvent, _: HandlerContext) -> None:
        if not fixed:
            raise KeyError("charge")
        effects.append(event.id)

    handler_registry.register("test.poison", handler)
    event = stripe_signer.event("test.poison", {"id": "obj_1"}, id="evt_poison_http")
    r = await app_client.post("/v1/webhooks/stripe", **stripe_signer.delivery(event))
    assert r.status_code == 200, r.text
    ctx = app_runtime.context
    for _ in range(MAX_HANDLER_FAILURES - 1):
        api_clock.advance(timedelta(hours=6))
        await process_due(ctx.factory, ctx.registry, ctx.handler_context, now=api_clock.now())
    admin = tokens.headers("admin")
    listed = (await app_client.get(URL, headers=admin)).json()
    assert [e["event_id"] for e in listed["data"]] == ["evt_poison_http"]
    assert listed["data"][0]["handler_failures"] == MAX_HANDLER_FAILURES
    fixed = True
    r = await app_client.post("/v1/admin/webhooks/evt_poison_http/replay", headers=admin)
    assert r.status_code == 202, r.text
    for _ in range(2):  # processed once, not again by a later pass
        await process_due(ctx.factory, ctx.registry, ctx.handler_context, now=api_clock.now())
    assert effects == ["evt_poison_http"]
    assert (await app_client.get(URL, headers=admin)).json()["parked"] == 0
