"""GET /admin: admins only, hostile input a 4xx page, what it shows escaped; the finance
page's webhook line; the demo's receiver (signatures, one effect per webhook-id)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.demo_receiver import PATH, DemoReceiver
from core.outbox import signing
from tests.api.conftest import Tokens

Client = AsyncTestClient[Litestar]


def _no_stripe(stripe_mock: respx.MockRouter) -> None:
    stripe_mock.get("/v1/balance_transactions").respond(
        json={"object": "list", "data": [], "has_more": False, "url": "/v1/balance_transactions"}
    )


def shown(html: str, name: str) -> str:
    found = re.search(rf'data-testid="{re.escape(name)}">([^<]*)<', html)
    assert found, name
    return found.group(1)


async def test_only_admins_see_the_admin_page(app_client: Client, tokens: Tokens) -> None:
    r = await app_client.get("/admin", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?next=%2Fadmin"
    for role in ("mentee", "coach", "finance"):
        r = await app_client.get("/admin", headers=tokens.headers(role))
        assert r.status_code == 403 and "Not allowed" in r.text, role
        assert 'href="/admin"' not in r.text  # no nav link either
    r = await app_client.get("/admin", headers=tokens.headers("admin"))
    assert r.status_code == 200
    assert 'href="/admin"' in r.text  # the nav link
    assert 'id="receiver-none"' in r.text  # no demo here
    assert 'id="endpoints-none"' in r.text and 'id="parked-none"' in r.text
    assert "<script>" not in r.text.split("</head>", 1)[1]  # no inline scripts (CSP)


async def test_hostile_log_ids_are_a_4xx_page(app_client: Client, tokens: Tokens) -> None:
    admin = tokens.headers("admin")
    for bad in ("abc", "0", "-1", "1.5", "²", "\uff11", str(2**63), "9" * 19, "99", "' OR 1=1"):
        r = await app_client.get("/admin", params={"log": bad}, headers=admin)
        assert 400 <= r.status_code < 500, (bad, r.status_code)
    r = await app_client.get("/admin", params={"log": "9" * 50}, headers=admin)
    assert 400 <= r.status_code < 500


async def test_endpoints_and_parked_events_are_shown_escaped(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, stripe_mock: respx.MockRouter
) -> None:
    now = datetime.now(UTC)
    async with clean_engine.begin() as conn:
        ep_id = await conn.scalar(
            text(
                "INSERT INTO outbox_endpoints (url, description, event_types, enabled, ordered, "
                "secret, failing_since, created_at, updated_at) VALUES ('https://hooks.example/"
                "x?a=<b>', '<script>alert(1)</script>', ARRAY['*'], true, true, 'whsec_x', :now, "
                ":now, :now) RETURNING id"
            ),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO webhook_events (stripe_event_id, endpoint, type, payload, "
                "received_at, status, attempts, handler_failures, last_error, "
                "first_attempt_at, last_attempt_at, failing_since, parked_at) VALUES "
                "('evt_poison', 'platform', 'refund.created', '{}'::jsonb, :now, 'parked', 8, "
                "8, '<img src=x onerror=alert(1)>', :now, :now, :now, :now)"
            ),
            {"now": now},
        )
    admin = tokens.headers("admin")
    r = await app_client.get("/admin", params={"log": str(ep_id)}, headers=admin)
    assert r.status_code == 200
    html = r.text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert shown(html, "health-endpoints") == "1" and shown(html, "health-failing") == "1"
    assert shown(html, "parked-total") == "1"
    assert 'data-post="/v1/admin/webhooks/evt_poison/replay"' in html
    assert 'id="attempts-none"' in html  # its delivery log, empty
    assert "whsec_x" not in html  # never a secret
    # The finance page's one line: finance staff read the figures, only admins get the link.
    _no_stripe(stripe_mock)
    page = await app_client.get("/finance", headers=tokens.headers("finance"))
    assert page.status_code == 200
    assert shown(page.text, "webhooks-failing") == "1"
    assert 'id="webhook-health-admin"' not in page.text
    page = await app_client.get("/finance", headers=admin)
    assert 'id="webhook-health-admin"' in page.text


async def test_the_demo_receiver_verifies_and_applies_each_event_once() -> None:
    secret = signing.new_secret()
    receiver = DemoReceiver(secret=secret)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver), base_url="http://r")

    async def send(msg_id: str, event: dict[str, object], key: str = secret) -> int:
        body = json.dumps(event)
        headers = signing.headers(msg_id, datetime.now(UTC), body, [key])
        return (await client.post(PATH, content=body, headers=headers)).status_code

    booking = {"id": 7, "coaching_session_id": 3, "mentee_id": 9}
    paid = {"type": "booking.paid", "data": {"booking": booking}}
    async with client:
        assert await send("evt_1", paid) == 200
        assert await send("evt_1", paid) == 200  # a retry: answered, not applied again
        assert await send("evt_2", paid, key=signing.new_secret()) == 400  # forged
        r = await client.post(PATH, content=b"{}", headers={"webhook-id": "evt_3"})
        assert r.status_code == 400  # unsigned
        partial = {"type": "booking.refunded", "data": {"booking": booking, "full": False}}
        assert await send("evt_4", partial) == 200
        full = {"type": "booking.refunded", "data": {"booking": booking, "full": True}}
        assert await send("evt_5", full) == 200
        assert (await client.get(PATH)).status_code == 404
    assert [line.action for line in receiver.newest_first()] == [
        "calendar_entry_removed", "confirmation_sent", "calendar_entry_created",
    ]  # fmt: skip
    assert receiver.received == 4 and receiver.refused == 2 and receiver.calendar == {}
