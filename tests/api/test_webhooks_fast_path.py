"""The webhook fast path (api.routes.webhooks.WebhookFastPath) over HTTP: same contract,
group commit, and what happens when the inbox cannot be written."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.runtime import Runtime
from core.inbox_receive import InboxUnavailable, Receipt
from tests.api.conftest import StripeSigner

PLATFORM = "/v1/webhooks/stripe"
TYPE = "test.fast.unhandled"


async def _ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT stripe_event_id FROM webhook_events ORDER BY id"))
        return [r[0] for r in rows]


async def test_concurrent_copies_of_one_event_store_one_row(
    app_client: AsyncTestClient[Litestar], stripe_signer: StripeSigner, clean_engine: AsyncEngine
) -> None:
    event = stripe_signer.event(TYPE, {"id": "x"}, id="evt_same")
    others = [stripe_signer.event(TYPE, {"id": "x"}, id=f"evt_o{i}") for i in range(5)]
    answers = await asyncio.gather(
        *(app_client.post(PLATFORM, **stripe_signer.delivery(event)) for _ in range(8)),
        *(app_client.post(PLATFORM, **stripe_signer.delivery(e)) for e in others),
    )
    assert all(a.status_code == 200 for a in answers)
    same = [a.json() for a in answers[:8]]
    assert sorted(s["duplicate"] for s in same) == [False] + [True] * 7
    assert all(a.json() == {"received": True, "duplicate": False} for a in answers[8:])
    assert sorted(await _ids(clean_engine)) == sorted(["evt_same", *(e["id"] for e in others)])
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[0].headers.get("x-request-id")


async def test_inbox_unavailable_answers_503_and_stores_nothing(
    app_client: AsyncTestClient[Litestar],
    app_runtime: Runtime,
    stripe_signer: StripeSigner,
    clean_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def down(receipt: Receipt) -> int | None:
        raise InboxUnavailable("webhook inbox unavailable: connection refused")

    monkeypatch.setattr(app_runtime.inbox, "store", down)
    event = stripe_signer.event(TYPE, {"id": "x"}, id="evt_down")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 503
    assert resp.json() == {
        "error": "ServiceUnavailable",
        "detail": "the webhook inbox is unavailable; retry later",
    }
    assert await _ids(clean_engine) == []


async def test_unexpected_error_is_a_500_with_the_request_id(
    app_client: AsyncTestClient[Litestar],
    app_runtime: Runtime,
    stripe_signer: StripeSigner,
    clean_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(receipt: Receipt) -> int | None:
        raise RuntimeError("bug")

    monkeypatch.setattr(app_runtime.inbox, "store", broken)
    event = stripe_signer.event(TYPE, {"id": "x"}, id="evt_bug")
    resp = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert resp.status_code == 500
    body = resp.json()
    assert body["error"] == "InternalError" and resp.headers["x-request-id"] in body["detail"]
    assert await _ids(clean_engine) == []


def _signed(signer: StripeSigner, body: bytes) -> dict[str, object]:
    return {"content": body, "headers": signer.headers(body)}


async def test_hostile_but_signed_bodies_are_clear_400s_nothing_written(
    app_client: AsyncTestClient[Litestar], stripe_signer: StripeSigner, clean_engine: AsyncEngine
) -> None:
    base = stripe_signer.event(TYPE, {"id": "x"}, id="evt_hostile")
    cases = {
        # jsonb cannot hold \u0000: PostgreSQL refuses the row (was a 500)
        "nul": json.dumps({**base, "data": {"object": {"note": "\u0000"}}}).encode(),
        "long id": json.dumps({**base, "id": "evt_" + "x" * 300}).encode(),
        "account not text": json.dumps({**base, "account": {"id": 1}}).encode(),
        "deep": b'{"id":"evt_deep","object":"event","type":"t","created":1,"data":{"object":'
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5000
        + b"}}",
    }
    for name, body in cases.items():
        resp = await app_client.post(PLATFORM, **_signed(stripe_signer, body))  # type: ignore[arg-type]
        assert resp.status_code == 400, (name, resp.text)
        assert resp.json()["error"] == "WebhookPayloadInvalid", name
    assert await _ids(clean_engine) == []


async def test_non_ascii_signature_header_is_400(
    app_client: AsyncTestClient[Litestar], stripe_signer: StripeSigner, clean_engine: AsyncEngine
) -> None:
    body = json.dumps(stripe_signer.event(TYPE, {"id": "x"}, id="evt_sig")).encode()
    header = stripe_signer.headers(body)["Stripe-Signature"]
    resp = await app_client.post(
        PLATFORM,
        content=body,
        headers={"Stripe-Signature": (header[:-1] + "\u00e9").encode("latin-1")},
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "WebhookSignatureInvalid"
    assert await _ids(clean_engine) == []


async def test_streamed_oversized_body_is_413(app: Litestar, clean_engine: AsyncEngine) -> None:
    # No Content-Length (chunked): the limit holds on the bytes received. Raw ASGI,
    # as the test client cannot stream a request body.
    chunks = [b" " * 65536] * 17
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body = chunks.pop() if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "path": PLATFORM,
        "raw_path": PLATFORM.encode(), "root_path": "", "scheme": "http", "query_string": b"",
        "headers": [(b"stripe-signature", b"t=1,v1=00"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
        "asgi": {"version": "3.0"},
    }  # fmt: skip
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {
        "error": "PayloadTooLarge",
        "detail": "Request Entity Too Large",
    }
    assert await _ids(clean_engine) == []


@pytest.mark.parametrize("length", ["abc", "-5", str(2 * 1024 * 1024)])
async def test_bad_or_huge_content_length_left_to_litestar(
    app_client: AsyncTestClient[Litestar], clean_engine: AsyncEngine, length: str
) -> None:
    resp = await app_client.post(
        PLATFORM, content=b"{}", headers={"Content-Length": length, "Stripe-Signature": "t=1"}
    )
    assert 400 <= resp.status_code < 500
    assert set(resp.json()) == {"error", "detail"}
    assert await _ids(clean_engine) == []


async def test_other_methods_and_paths_still_reach_litestar(
    app_client: AsyncTestClient[Litestar],
) -> None:
    assert (await app_client.get(PLATFORM)).status_code == 405
    assert (await app_client.post("/v1/webhooks/stripe/other")).status_code == 404


async def test_litestar_route_gives_the_same_answers(
    app_client: AsyncTestClient[Litestar], stripe_signer: StripeSigner, clean_engine: AsyncEngine
) -> None:
    # A trailing slash is not the fast path's exact path: Litestar's route serves it,
    # through the same receive_delivery.
    event = stripe_signer.event(TYPE, {"id": "x"}, id="evt_slash")
    first = await app_client.post(PLATFORM + "/", **stripe_signer.delivery(event))
    again = await app_client.post(PLATFORM, **stripe_signer.delivery(event))
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False}
    assert again.json() == {"received": True, "duplicate": True}
    bad = await app_client.post(PLATFORM + "/", content=b"{}", headers={"Stripe-Signature": "x"})
    assert bad.status_code == 400 and bad.json()["error"] == "WebhookSignatureInvalid"
    assert await _ids(clean_engine) == ["evt_slash"]
