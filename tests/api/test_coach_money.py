"""Coach money endpoints and admin payout actions, over the real app and database."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from core.db import session_factory
from core.settings import Settings
from payouts.jobs import run_cycle
from tests.api.conftest import Tokens
from tests.payouts.helpers import FakeStripe, add_earning

Client = AsyncTestClient[Litestar]


async def coach_id(client: Client, tokens: Tokens, sub: str = "coach-1") -> int:
    r = await client.get("/v1/coaches/me/balance", headers=tokens.headers("coach", sub))
    assert r.status_code == 200, r.text
    return int(r.json()["coach_id"])


async def set_up_paid_coach(
    client: Client,
    tokens: Tokens,
    engine: AsyncEngine,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> int:
    coach = await coach_id(client, tokens)
    factory = session_factory(engine)
    async with factory() as db:
        await db.execute(
            text("INSERT INTO coach_profiles (user_id, payout_schedule) VALUES (:u, 'instant')"),
            {"u": coach},
        )
        await db.execute(
            text(
                "INSERT INTO connect_accounts (coach_id, stripe_account_id, payouts_enabled) "
                "VALUES (:u, 'acct_api1', true)"
            ),
            {"u": coach},
        )
        await add_earning(db, coach, gross=10_000, paid_at=clock.now() - timedelta(days=4))
        await add_earning(db, coach, gross=5_000, paid_at=clock.now() - timedelta(days=4))
        await add_earning(db, coach, gross=2_000, paid_at=clock.now() - timedelta(hours=1))
        await db.commit()
    await run_cycle(factory, gateway=stripe, clock=clock, settings=settings)  # type: ignore[arg-type]
    return coach


async def test_balance_earnings_and_payouts_show_what_was_paid(
    app_client: Client,
    tokens: Tokens,
    clean_engine: AsyncEngine,
    api_clock: FrozenClock,
    api_settings: Settings,
) -> None:
    stripe = FakeStripe()
    coach = await set_up_paid_coach(
        app_client, tokens, clean_engine, api_clock, api_settings, stripe
    )
    h = tokens.headers("coach")
    [bal] = (await app_client.get("/v1/coaches/me/balance", headers=h)).json()["balances"]
    assert bal["currency"] == "usd"
    assert (bal["pending"], bal["available"], bal["in_transit"], bal["paid_out"]) == (
        1600,
        0,
        0,
        12_000,
    )
    assert bal["lifetime_earnings"] == 13_600 and bal["next_release_amount"] == 1600
    assert bal["next_release_at"] is not None

    earnings = (await app_client.get("/v1/coaches/me/earnings", headers=h)).json()
    assert [e["status"] for e in earnings["data"]] == ["pending", "paid", "paid"]
    assert (
        earnings["data"][1]["share"] == 4000 and earnings["data"][1]["coaching_session_id"] == 4242
    )
    payouts = (await app_client.get("/v1/coaches/me/payouts", headers=h)).json()
    [p] = payouts["data"]
    assert p["amount"] == 12_000 and p["status"] == "paid" and p["stripe_transfer_id"] == "tr_1"
    assert p["earning_ids"] == sorted(e["id"] for e in earnings["data"][1:])
    assert payouts["bank_payouts"] == [] and not payouts["has_more"]

    page = (await app_client.get("/v1/coaches/me/earnings?limit=1", headers=h)).json()
    assert len(page["data"]) == 1 and page["has_more"]
    nxt = await app_client.get(
        f"/v1/coaches/me/earnings?limit=2&before={page['data'][0]['id']}", headers=h
    )
    assert [e["status"] for e in nxt.json()["data"]] == ["paid", "paid"]

    other = await coach_id(app_client, tokens, "coach-2")
    assert other != coach
    assert (
        await app_client.get("/v1/coaches/me/payouts", headers=tokens.headers("coach", "coach-2"))
    ).json()["data"] == []


@pytest.mark.parametrize("path", ["balance", "earnings", "payouts"])
async def test_coach_endpoints_need_a_coach(app_client: Client, tokens: Tokens, path: str) -> None:
    assert (await app_client.get(f"/v1/coaches/me/{path}")).status_code == 401
    r = await app_client.get(f"/v1/coaches/me/{path}", headers=tokens.headers("mentee"))
    assert r.status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "before=-1",
        "before=0",
        "limit=99999999999999999999999",
        "before=x%27%3B--",
    ],
)
async def test_bad_paging_is_refused(app_client: Client, tokens: Tokens, query: str) -> None:
    r = await app_client.get(f"/v1/coaches/me/earnings?{query}", headers=tokens.headers("coach"))
    assert 400 <= r.status_code < 500
    r = await app_client.get(f"/v1/coaches/me/payouts?{query}", headers=tokens.headers("coach"))
    assert 400 <= r.status_code < 500


async def test_admin_pauses_resumes_and_retries(
    app_client: Client,
    tokens: Tokens,
    clean_engine: AsyncEngine,
    api_clock: FrozenClock,
    api_settings: Settings,
) -> None:
    stripe = FakeStripe()
    from core.stripe_errors import StripeRefused

    stripe.refuse_destinations["acct_api1"] = StripeRefused(
        "account_closed", "The account is closed.", 400
    )
    coach = await set_up_paid_coach(
        app_client, tokens, clean_engine, api_clock, api_settings, stripe
    )
    admin = tokens.headers("admin")
    payouts = (
        await app_client.get("/v1/coaches/me/payouts", headers=tokens.headers("coach"))
    ).json()
    [failed] = payouts["data"]
    assert failed["status"] == "failed" and "closed" in failed["failure_reason"]

    r = await app_client.post(
        f"/v1/admin/coaches/{coach}/payouts/pause", headers=admin, json={"reason": "KYC review"}
    )
    shown = r.json()
    assert r.status_code == 200 and shown.pop("next_payout_attempt_at")  # refused once: 1 h
    assert shown == {
        "coach_id": coach,
        "payouts_paused": True,
        "payouts_paused_reason": "KYC review",
        "payouts_paused_by": "admin",
        "payout_refusals": 1,
    }
    r = await app_client.post(f"/v1/admin/payouts/{failed['id']}/retry", headers=admin)
    assert r.status_code == 409  # paused
    r = await app_client.post(f"/v1/admin/coaches/{coach}/payouts/resume", headers=admin)
    assert r.status_code == 200 and r.json()["payouts_paused"] is False
    assert (r.json()["payout_refusals"], r.json()["next_payout_attempt_at"]) == (0, None)
    r = await app_client.post(f"/v1/admin/payouts/{failed['id']}/retry", headers=admin)
    assert (
        r.status_code == 202
        and r.json()["amount"] == 12_000
        and r.json()["retry_of"] == failed["id"]
    )
    assert (
        await app_client.post(f"/v1/admin/payouts/{failed['id']}/retry", headers=admin)
    ).status_code == 409
    retried = r.json()["payout_id"]
    assert (
        await app_client.post(f"/v1/admin/payouts/{retried}/retry", headers=admin)
    ).status_code == 409
    async with clean_engine.connect() as conn:
        actions = (
            (
                await conn.execute(
                    text("SELECT action FROM audit_log WHERE action LIKE 'payouts.%' ORDER BY id")
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["payouts.pause", "payouts.resume", "payouts.retry"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (None, 422),
        ("not json", 422),
        ("[]", 422),
        ({}, 422),
        ({"reason": ""}, 422),
        ({"reason": 5}, 422),
        ({"reason": "x" * 501}, 422),
        ({"reason": "ok", "extra": 1}, 422),
        ({"reason": "a\x00b"}, 422),
    ],
)
async def test_pause_needs_a_good_reason(
    app_client: Client, tokens: Tokens, body: Any, status: int
) -> None:
    coach = await coach_id(app_client, tokens)
    content = (
        body if isinstance(body, str) else (b"" if body is None else json.dumps(body).encode())
    )
    r = await app_client.post(
        f"/v1/admin/coaches/{coach}/payouts/pause",
        headers={**tokens.headers("admin"), "Content-Type": "application/json"},
        content=content,
    )
    assert r.status_code in (status, 400), r.text


async def test_admin_actions_on_what_does_not_exist_or_by_others(
    app_client: Client, tokens: Tokens
) -> None:
    admin = tokens.headers("admin")
    ok = {"reason": "x"}
    assert (
        await app_client.post("/v1/admin/coaches/999999/payouts/pause", headers=admin, json=ok)
    ).status_code == 404
    assert (
        await app_client.post(f"/v1/admin/coaches/{2**63}/payouts/pause", headers=admin, json=ok)
    ).status_code in (400, 404)
    assert (
        await app_client.post("/v1/admin/payouts/424242/retry", headers=admin)
    ).status_code == 404
    assert (await app_client.post("/v1/admin/payouts/-1/retry", headers=admin)).status_code in (
        400,
        404,
    )
    coach = tokens.headers("coach")
    assert (await app_client.post("/v1/admin/payouts/1/retry", headers=coach)).status_code == 403
    assert (await app_client.post("/v1/admin/coaches/1/payouts/pause", json=ok)).status_code == 401


async def test_a_database_that_is_away_is_a_503_not_a_500(
    app_client: Client, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc

    from payouts import views

    async def away(*args: object, **kwargs: object) -> list[object]:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit reached, connection timed out")

    monkeypatch.setattr(views, "coach_balance", away)
    r = await app_client.get("/v1/coaches/me/balance", headers=tokens.headers("coach"))
    assert r.status_code == 503, r.text
    assert r.json() == {
        "error": "ServiceUnavailable",
        "detail": "the database is unavailable; retry later",
    }


async def test_a_coach_sees_why_payouts_are_paused_or_waiting(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: FrozenClock
) -> None:
    coach = await coach_id(app_client, tokens)
    h = tokens.headers("coach")
    body = (await app_client.get("/v1/coaches/me/balance", headers=h)).json()
    assert (body["payouts_paused"], body["payouts_paused_reason"]) == (False, None)
    assert (body["payouts_paused_by"], body["next_payout_attempt_at"]) == (None, None)
    retry_at = api_clock.now() + timedelta(hours=2)
    async with clean_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO coach_profiles (user_id, payout_schedule, payout_refusals,"
                " payout_retry_at) VALUES (:u, 'instant', 2, :at)"
            ),
            {"u": coach, "at": retry_at},
        )
    body = (await app_client.get("/v1/coaches/me/balance", headers=h)).json()
    assert body["payouts_paused"] is False
    assert body["next_payout_attempt_at"].startswith(retry_at.strftime("%Y-%m-%dT%H:%M:%S"))
    page = await app_client.get("/coach", headers=h)
    assert 'id="payouts-backing-off"' in page.text and 'id="payouts-paused"' not in page.text
    async with clean_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE coach_profiles SET payouts_paused = true, payouts_paused_by ="
                " 'transfer_refusals', payouts_paused_reason = 'Stripe refused 3 transfers'"
                " WHERE user_id = :u"
            ),
            {"u": coach},
        )
    body = (await app_client.get("/v1/coaches/me/balance", headers=h)).json()
    assert (body["payouts_paused"], body["payouts_paused_by"]) == (True, "transfer_refusals")
    assert body["payouts_paused_reason"] == "Stripe refused 3 transfers"
    page = await app_client.get("/coach", headers=h)
    assert 'id="payouts-paused"' in page.text and "Stripe refused 3 transfers" in page.text
    api_clock.advance(timedelta(hours=3))  # the backoff is over: no wait shown
    body = (await app_client.get("/v1/coaches/me/balance", headers=h)).json()
    assert body["next_payout_attempt_at"] is None and body["payouts_paused"] is True
