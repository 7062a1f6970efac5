"""Coach onboarding routes against a respx-mocked Stripe."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from connect.models import CoachProfile, ConnectAccount
from tests.api.conftest import StripeSigner, Tokens
from tests.connect.helpers import active_account, fresh_account, restricted_account
from tests.core.stripe_fixtures import account_link, form, login_link

Client = AsyncTestClient[Litestar]
ACCT = "/v1/accounts/acct_1Coach"


def mock_onboarding(stripe: Any) -> tuple[Any, Any]:
    create = stripe.post("/v1/accounts").respond(200, json=fresh_account())
    links = stripe.post("/v1/account_links").respond(200, json=account_link())
    return create, links


async def count(engine: AsyncEngine, model: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(model)) or 0)


async def test_onboarding_creates_one_account_and_returns_links(
    app_client: Client, stripe_mock: Any, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    create, links = mock_onboarding(stripe_mock)
    coach = tokens.headers("coach")
    first = await app_client.post("/v1/coaches/me/onboarding", headers=coach)
    second = await app_client.post(
        "/v1/coaches/me/onboarding", headers=coach, json={"country": "US"}
    )
    assert first.status_code == 200, first.text
    assert second.status_code == 200
    assert first.json()["url"] == account_link()["url"]
    assert first.json()["account_created"] is True
    assert second.json()["account_created"] is False
    assert first.json()["status"] == "onboarding"
    assert create.call_count == 1 and links.call_count == 2
    assert await count(clean_engine, ConnectAccount) == 1
    assert await count(clean_engine, CoachProfile) == 1


async def test_refresh_url_redirects_to_a_new_link_without_a_bearer_token(
    app_client: Client, stripe_mock: Any, tokens: Tokens
) -> None:
    _, links = mock_onboarding(stripe_mock)
    await app_client.post("/v1/coaches/me/onboarding", headers=tokens.headers("coach"))
    refresh = urlsplit(form(links.calls.last.request)["refresh_url"])
    resp = await app_client.get(f"{refresh.path}?{refresh.query}", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == account_link()["url"]
    assert links.call_count == 2


async def test_refresh_and_return_with_bad_token_are_refused(
    app_client: Client, stripe_mock: Any
) -> None:
    links = stripe_mock.post("/v1/account_links").respond(200, json=account_link())
    for query in ["", "?token=", "?token=1.2.3", "?token=1.9999999999.ab", "?token=" + "9" * 300]:
        for path in ("/v1/coaches/me/onboarding/refresh", "/v1/coaches/me/onboarding/return"):
            resp = await app_client.get(path + query, follow_redirects=False)
            assert resp.status_code in (400, 403, 422), (path, query, resp.text)
            assert "error" in resp.json()
    assert links.call_count == 0


async def test_return_page_shows_the_fresh_status(
    app_client: Client, stripe_mock: Any, tokens: Tokens
) -> None:
    _, links = mock_onboarding(stripe_mock)
    await app_client.post("/v1/coaches/me/onboarding", headers=tokens.headers("coach"))
    ret = urlsplit(form(links.calls.last.request)["return_url"])
    stripe_mock.get(ACCT).respond(200, json=restricted_account())
    page = await app_client.get(f"{ret.path}?{ret.query}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "restricted" in page.text and "individual.verification.document" in page.text
    assert "/v1/coaches/me/onboarding/refresh?token=" in page.text

    stripe_mock.get(ACCT).respond(200, json=active_account())
    stripe_mock.post(f"{ACCT}/login_links").respond(200, json=login_link())
    data = await app_client.get(f"{ret.path}?{ret.query}", headers={"Accept": "application/json"})
    assert data.json()["status"] == "active"


async def test_account_view_before_and_after_activation(
    app_client: Client, stripe_mock: Any, tokens: Tokens, stripe_signer: StripeSigner
) -> None:
    coach = tokens.headers("coach")
    before = await app_client.get("/v1/coaches/me/account", headers=coach)
    assert before.status_code == 200
    assert before.json()["status"] == "not_started"
    mock_onboarding(stripe_mock)
    await app_client.post("/v1/coaches/me/onboarding", headers=coach)
    mid = (await app_client.get("/v1/coaches/me/account", headers=coach)).json()
    assert mid["status"] == "onboarding" and mid["dashboard_url"] is None
    assert mid["requirements_currently_due"] == ["external_account", "tos_acceptance.date"]

    retrieve = stripe_mock.get(ACCT).respond(200, json=active_account())
    stripe_mock.post(f"{ACCT}/login_links").respond(200, json=login_link())
    # The event's snapshot is stale on purpose: the handler must re-read the account.
    event = stripe_signer.event("account.updated", fresh_account(), account="acct_1Coach")
    hook = await app_client.post(
        "/v1/webhooks/stripe/connect", **stripe_signer.delivery(event, connect=True)
    )
    assert hook.status_code == 200
    assert retrieve.call_count == 1
    after = (await app_client.get("/v1/coaches/me/account", headers=coach)).json()
    assert after["status"] == "active" and after["payouts_enabled"] is True
    assert after["dashboard_url"] == login_link()["url"]


async def test_other_roles_cannot_onboard_or_read_a_coach_account(
    app_client: Client, stripe_mock: Any, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    create, _ = mock_onboarding(stripe_mock)
    for role in ("mentee", "finance", "admin"):
        resp = await app_client.post("/v1/coaches/me/onboarding", headers=tokens.headers(role))
        assert resp.status_code == 403, role
        assert resp.json()["error"] == "Forbidden"
        resp = await app_client.get("/v1/coaches/me/account", headers=tokens.headers(role))
        assert resp.status_code == 403, role
    assert create.call_count == 0
    assert await count(clean_engine, CoachProfile) == 0


async def test_no_token_is_401(app_client: Client) -> None:
    assert (await app_client.post("/v1/coaches/me/onboarding")).status_code == 401
    assert (await app_client.get("/v1/coaches/me/account")).status_code == 401


async def test_a_coach_sees_only_their_own_account(
    app_client: Client, stripe_mock: Any, tokens: Tokens
) -> None:
    mock_onboarding(stripe_mock)
    await app_client.post("/v1/coaches/me/onboarding", headers=tokens.headers("coach", "c-a"))
    other = await app_client.get("/v1/coaches/me/account", headers=tokens.headers("coach", "c-b"))
    assert other.json()["status"] == "not_started"
    assert other.json()["stripe_account_id"] is None
    mine = await app_client.get("/v1/coaches/me/account", headers=tokens.headers("coach", "c-a"))
    peek = await app_client.get(
        f"/v1/admin/coaches/{mine.json()['coach_id']}", headers=tokens.headers("coach", "c-b")
    )
    assert peek.status_code == 403


BAD_BODIES = [
    b"{",
    b"[]",
    b'"US"',
    b'{"country": "usa"}',
    b'{"country": "us"}',
    b'{"country": 1}',
    b'{"country": null}',
    b'{"country": "US", "type": "standard"}',
    b'{"country": "' + b"A" * 3000 + b'"}',
    b"\xff\xfe",
]


async def test_bad_onboarding_body_is_refused_and_writes_nothing(
    app_client: Client, stripe_mock: Any, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    create, _ = mock_onboarding(stripe_mock)
    for body in BAD_BODIES:
        resp = await app_client.post(
            "/v1/coaches/me/onboarding",
            headers={**tokens.headers("coach"), "Content-Type": "application/json"},
            content=body,
        )
        assert resp.status_code == 422, (body, resp.text)
        assert "error" in resp.json()
    assert create.call_count == 0
    assert await count(clean_engine, ConnectAccount) == 0


async def test_oversized_body_is_413(app_client: Client, tokens: Tokens) -> None:
    resp = await app_client.post(
        "/v1/coaches/me/onboarding",
        headers={**tokens.headers("coach"), "Content-Type": "application/json"},
        content=b'{"country": "' + b"A" * 10_000 + b'"}',
    )
    assert resp.status_code == 413


async def test_stripe_down_is_503_and_only_the_request_is_kept(
    app_client: Client, stripe_mock: Any, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    stripe_mock.post("/v1/accounts").mock(side_effect=httpx.ConnectError("down"))
    resp = await app_client.post("/v1/coaches/me/onboarding", headers=tokens.headers("coach"))
    assert resp.status_code == 503
    assert await count(clean_engine, CoachProfile) == 0  # the request's transaction rolled back
    async with clean_engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM connect_accounts")) == 0
        # Kept on purpose, committed before Stripe was called: had Stripe made the
        # account, a retry past its 24 h idempotency window would look for it.
        noted = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'connect_account.requested'")
        )
        assert noted == 1


def test_return_url_token_is_urlsafe() -> None:
    from datetime import UTC, datetime

    from connect.links import sign_link_token

    token = sign_link_token(12, secret="s", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert parse_qs(f"token={token}")["token"] == [token]
