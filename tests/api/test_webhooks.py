"""POST /v1/webhooks/stripe[/connect]: verify, store once, process once, retry failures."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.runtime import Runtime
from core.clock import FrozenClock
from core.db import session_factory
from core.errors import ConfigurationError
from core.inbox import HandlerContext, HandlerRegistry, WebhookEvent, process_due
from core.settings import Settings, load_settings
from core.stripe_types import StripeEvent
from tests.api.conftest import StripeSigner

PLATFORM = "/v1/webhooks/stripe"
CONNECT = "/v1/webhooks/stripe/connect"
TEST_TYPE = "test.thing.happened"
FAILING_TYPE = "test.thing.failed"


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail_times = 0

    async def handle(self, db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
        self.seen.append(event.id)
        # An effect in the same transaction: must commit with the mark, or not at all.
        await db.execute(
            text(
                "INSERT INTO audit_log (at, actor_kind, action, entity_type, entity_id, cause) "
                "VALUES (now(), 'stripe', 'test', 'event', :id, 'webhook')"
            ),
            {"id": event.id},
        )
        if event.type == FAILING_TYPE and self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("handler broke")


@pytest.fixture
def recorder(handler_registry: HandlerRegistry) -> Recorder:
    rec = Recorder()
    handler_registry.register(TEST_TYPE, rec.handle)
    handler_registry.register(FAILING_TYPE, rec.handle)
    return rec


async def _rows(engine: AsyncEngine) -> list[WebhookEvent]:
    async with session_factory(engine)() as db:
        return list((await db.execute(select(WebhookEvent).order_by(WebhookEvent.id))).scalars())


async def _effects(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one())


async def test_valid_event_stored_and_handled_once(
    app_client: AsyncTestClient[Litestar],
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
) -> None:
    event = stripe_signer.event(TEST_TYPE, {"id": "obj_1", "object": "thing"}, id="evt_one")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 200
    assert resp.json() == {"received": True, "duplicate": False}
    rows = await _rows(clean_engine)
    assert len(rows) == 1
    row = rows[0]
    assert (row.stripe_event_id, row.endpoint, row.type) == ("evt_one", "platform", TEST_TYPE)
    assert row.status == "processed" and row.processed_at is not None and row.attempts == 1
    assert row.payload["data"]["object"]["id"] == "obj_1"
    assert recorder.seen == ["evt_one"]
    assert await _effects(clean_engine) == 1


async def test_same_event_five_times_handled_once(
    app_client: AsyncTestClient[Litestar],
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
) -> None:
    event = stripe_signer.event(TEST_TYPE, {"id": "obj_1"}, id="evt_dup")
    answers = [await app_client.post(PLATFORM, **stripe_signer.delivery(event)) for _ in range(5)]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True, True]
    assert len(await _rows(clean_engine)) == 1
    assert recorder.seen == ["evt_dup"]
    assert await _effects(clean_engine) == 1


async def test_connect_endpoint_uses_its_own_secret(
    app_client: AsyncTestClient[Litestar],
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
) -> None:
    event = stripe_signer.event(TEST_TYPE, {"id": "acct_1"}, id="evt_c", account="acct_1")
    wrong = await app_client.post(CONNECT, **stripe_signer.delivery(event, connect=False))
    assert wrong.status_code == 400
    right = await app_client.post(CONNECT, **stripe_signer.delivery(event, connect=True))
    assert right.status_code == 200
    (row,) = await _rows(clean_engine)
    assert row.endpoint == "connect" and row.account == "acct_1"


def _bad_deliveries(signer: StripeSigner) -> dict[str, dict[str, Any]]:
    event = signer.event(TEST_TYPE, {"id": "obj"}, id="evt_bad")
    body = json.dumps(event).encode()
    good = signer.headers(body)
    stale = signer.headers(body, timestamp=int(time.time()) - 301)
    not_json = b"this is not json"
    return {
        "missing header": {"content": body, "headers": {"Content-Type": "application/json"}},
        "garbage header": {"content": body, "headers": {"Stripe-Signature": "t=1,v1=zz"}},
        "wrong secret": {
            "content": body,
            "headers": StripeSigner(platform_secret="whsec_other").headers(body),
        },
        "tampered body": {"content": body.replace(b"obj", b"obk"), "headers": good},
        "stale timestamp": {"content": body, "headers": stale},
        "non-JSON body": {"content": not_json, "headers": signer.headers(not_json)},
        "not an event": {"content": b"[1]", "headers": signer.headers(b"[1]")},
        "non-UTF-8": {"content": b"\xff\xfe", "headers": signer.headers(b"\xff\xfe")},
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing header",
        "garbage header",
        "wrong secret",
        "tampered body",
        "stale timestamp",
        "non-JSON body",
        "not an event",
        "non-UTF-8",
    ],
)
async def test_bad_deliveries_rejected_and_nothing_written(
    app_client: AsyncTestClient[Litestar],
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
    case: str,
) -> None:
    resp = await app_client.post(PLATFORM, **_bad_deliveries(stripe_signer)[case])
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail"}
    expected = "WebhookPayloadInvalid" if case in ("non-JSON body", "not an event") else None
    assert body["error"] == (expected or "WebhookSignatureInvalid")
    assert await _rows(clean_engine) == []
    assert recorder.seen == []


async def test_oversized_body_413_nothing_written(
    app_client: AsyncTestClient[Litestar], stripe_signer: StripeSigner, clean_engine: AsyncEngine
) -> None:
    event = stripe_signer.event(TEST_TYPE, {"id": "obj", "pad": "x" * (1024 * 1024)})
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 413
    assert resp.json()["error"] == "PayloadTooLarge"
    assert await _rows(clean_engine) == []


async def test_unknown_type_stored_and_ignored(
    app_client: AsyncTestClient[Litestar], stripe_signer: StripeSigner, clean_engine: AsyncEngine
) -> None:
    event = stripe_signer.event("test.never.registered", {"id": "x"}, id="evt_unknown")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 200
    (row,) = await _rows(clean_engine)
    assert row.status == "ignored" and row.processed_at is not None


async def test_failing_handler_left_for_retry_then_processed(
    app_client: AsyncTestClient[Litestar],
    app_runtime: Runtime,
    api_clock: FrozenClock,
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
) -> None:
    recorder.fail_times = 1
    event = stripe_signer.event(FAILING_TYPE, {"id": "obj"}, id="evt_fail")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 200  # Stripe must not retry: we have it stored
    (row,) = await _rows(clean_engine)
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error is not None and "handler broke" in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > api_clock.now()
    assert await _effects(clean_engine) == 0  # the effect was rolled back with the failure

    ctx = app_runtime.context
    # Not due yet: nothing happens.
    assert (
        await process_due(ctx.factory, ctx.registry, ctx.handler_context, now=api_clock.now()) == 0
    )
    api_clock.advance(timedelta(minutes=5))
    assert (
        await process_due(ctx.factory, ctx.registry, ctx.handler_context, now=api_clock.now()) == 1
    )
    (row,) = await _rows(clean_engine)
    assert row.status == "processed" and row.attempts == 2 and row.last_error is None
    assert recorder.seen == ["evt_fail", "evt_fail"]
    assert await _effects(clean_engine) == 1


@pytest.mark.parametrize("webhook_processing", ["background"])
async def test_background_processing_after_response(
    app_client: AsyncTestClient[Litestar],
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
) -> None:
    event = stripe_signer.event(TEST_TYPE, {"id": "obj"}, id="evt_bg")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 200
    for _ in range(50):
        rows = await _rows(clean_engine)
        if rows and rows[0].status == "processed":
            break
        await asyncio.sleep(0.05)
    assert rows[0].status == "processed"
    assert recorder.seen == ["evt_bg"]


@pytest.mark.parametrize("webhook_processing", ["off"])
async def test_processing_off_stores_due_at_once_for_the_worker(
    app_client: AsyncTestClient[Litestar],
    app_runtime: Runtime,
    api_clock: FrozenClock,
    stripe_signer: StripeSigner,
    recorder: Recorder,
    clean_engine: AsyncEngine,
) -> None:
    event = stripe_signer.event(TEST_TYPE, {"id": "obj"}, id="evt_off")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.json() == {"received": True, "duplicate": False}
    (row,) = await _rows(clean_engine)
    assert row.status == "pending" and row.attempts == 0 and recorder.seen == []
    # No grace period: nobody in the web process will process it.
    assert row.next_attempt_at == row.received_at == api_clock.now()
    assert row.payload == event  # the body as received
    ctx = app_runtime.context
    assert (
        await process_due(ctx.factory, ctx.registry, ctx.handler_context, now=api_clock.now()) == 1
    )
    (row,) = await _rows(clean_engine)
    assert row.status == "processed" and row.attempts == 1 and recorder.seen == ["evt_off"]
    assert await _effects(clean_engine) == 1


@pytest.mark.parametrize("webhook_processing", ["background"])
async def test_background_keeps_the_grace_period_and_ignores_unhandled_types(
    app_client: AsyncTestClient[Litestar],
    api_clock: FrozenClock,
    stripe_signer: StripeSigner,
    clean_engine: AsyncEngine,
) -> None:
    event = stripe_signer.event("test.never.registered", {"id": "x"}, id="evt_bg_unknown")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 200
    for _ in range(50):
        (row,) = await _rows(clean_engine)
        if row.status != "pending":
            break
        await asyncio.sleep(0.05)
    assert row.status == "ignored" and row.attempts == 1 and row.next_attempt_at is None
    assert row.processed_at == api_clock.now()


def test_runtime_takes_the_processing_mode_from_the_setting(api_settings: Settings) -> None:
    off = api_settings.model_copy(update={"webhook_processing": "off"})
    assert Runtime(off).webhook_processing == "off"
    assert Runtime(off, webhook_processing="inline").webhook_processing == "inline"
    assert Runtime(api_settings).webhook_processing == "background"


def test_processing_setting_rejects_unknown_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COACHPAY_WEBHOOK_PROCESSING", "later")
    with pytest.raises(ConfigurationError, match="COACHPAY_WEBHOOK_PROCESSING"):
        load_settings()
    monkeypatch.setenv("COACHPAY_WEBHOOK_PROCESSING", "off")
    assert load_settings().webhook_processing == "off"
