"""The finance dashboard and coach page, rendered by the server, over the hand-checked data."""

from __future__ import annotations

import re

import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.charts import bar_chart, hbar_chart
from api.routes import pages_finance
from tests.api.conftest import SAME_ORIGIN, Tokens
from tests.api.test_finance import seeded  # noqa: F401  (fixture)

Client = AsyncTestClient[Litestar]
PERIOD = {"from": "2031-03-01", "to": "2031-03-20"}


def cell(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{re.escape(testid)}">([^<]*)<', html)
    assert found, testid
    return found.group(1)


def _no_stripe(stripe_mock: respx.MockRouter) -> None:
    stripe_mock.get("/v1/balance_transactions").respond(
        json={"object": "list", "data": [], "has_more": False, "url": "/v1/balance_transactions"}
    )


async def test_pages_need_sign_in_and_the_right_role(app_client: Client, tokens: Tokens) -> None:
    r = await app_client.get("/finance", params={"currency": "usd"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/?next=%2Ffinance%3Fcurrency%3Dusd"
    signin = await app_client.get("/", params={"next": "/finance"})
    assert 'name="next" value="/finance"' in signin.text
    evil = await app_client.get("/", params={"next": "//evil.example"})
    assert 'value="//evil' not in evil.text
    for role, page in (("mentee", "/finance"), ("coach", "/finance"), ("mentee", "/coach")):
        r = await app_client.get(page, headers=tokens.headers(role))
        assert r.status_code == 403, (role, page)
        assert "Not allowed" in r.text


@pytest.mark.usefixtures("seeded")
async def test_cookie_sign_in_then_dashboard(
    app_client: Client, tokens: Tokens, stripe_mock: respx.MockRouter
) -> None:
    _no_stripe(stripe_mock)
    r = await app_client.post(
        "/auth/session", data={"token": tokens.token("finance"), "next": "/finance"},
        headers=SAME_ORIGIN, follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    page = await app_client.get("/finance", params=PERIOD)  # the cookie only
    assert page.status_code == 200
    html = page.text
    assert cell(html, "total-usd-gross_volume") == "180.00 USD"
    assert cell(html, "total-usd-net_platform_revenue") == "4.88 USD"
    assert cell(html, "total-jpy-gross_volume") == "5,000 JPY"
    assert cell(html, "total-kwd-gross_volume") == "12.345 KWD"
    assert '<svg id="chart-revenue-usd"' in html and '<svg id="chart-revenue-jpy"' in html
    assert cell(html, "total-usd-payments") == "3 payments"
    assert cell(html, "total-jpy-payments") == "1 payment"
    assert 'id="recon-status">differences<' in html  # Stripe (mocked) has none of it
    jpy = (await app_client.get("/finance", params={**PERIOD, "currency": "jpy"})).text
    assert cell(jpy, "total-jpy-processing_fees") == "180 JPY"
    assert 'data-testid="total-usd-gross_volume"' not in jpy
    later = (await app_client.get("/finance", params={**PERIOD, "from": "2031-03-08"})).text
    assert cell(later, "total-usd-gross_volume") == "0.00 USD"
    assert cell(later, "total-usd-payouts_made") == "80.00 USD"


async def test_dashboard_bad_filter_says_so(
    app_client: Client, tokens: Tokens, stripe_mock: respx.MockRouter
) -> None:
    _no_stripe(stripe_mock)
    r = await app_client.get(
        "/finance", params={"from": "<script>"}, headers=tokens.headers("finance")
    )
    assert r.status_code == 200
    assert 'id="page-error">from: ' in r.text
    assert "<script>" not in r.text  # escaped


async def _coach_users(engine: AsyncEngine) -> None:
    """Users 1 and 2, the coaches the ledger seed posts for (it writes no users)."""
    async with engine.begin() as conn:
        for uid in (1, 2):
            await conn.execute(
                text(
                    "INSERT INTO users (id, sub, role, created_at, last_seen_at) "
                    "VALUES (:i, :s, 'coach', now(), now())"
                ),
                {"i": uid, "s": f"seeded-coach-{uid}"},
            )
        await conn.execute(text("SELECT setval('users_id_seq', 100)"))


@pytest.mark.usefixtures("seeded")
async def test_coach_page(app_client: Client, tokens: Tokens, clean_engine: AsyncEngine) -> None:
    await _coach_users(clean_engine)
    f = tokens.headers("finance")
    html = (await app_client.get("/coach", params={"coach_id": 1}, headers=f)).text
    assert cell(html, "balance-usd-pending") == "24.00 USD"
    assert cell(html, "balance-usd-available") == "0.00 USD"
    # Net of refunds and disputes: shares 8000 + 4000 + 2400, less B's refund (1600) and
    # C's lost dispute (2400). The page used to show the shares alone (144.00).
    assert cell(html, "earned-usd") == "104.00 USD"
    assert '<svg id="chart-earnings-usd"' in html
    narrow = await app_client.get(
        "/coach", params={"coach_id": 1, "from": "2031-03-04", "to": "2031-03-05"}, headers=f
    )
    assert cell(narrow.text, "earned-usd") == "40.00 USD"
    refund_day = await app_client.get(
        "/coach", params={"coach_id": 1, "from": "2031-03-05", "to": "2031-03-06"}, headers=f
    )
    assert cell(refund_day.text, "earned-usd") == "-16.00 USD"
    jpy = (await app_client.get("/coach", params={"coach_id": 2}, headers=f)).text
    assert cell(jpy, "balance-jpy-pending") == "4,000 JPY"
    bad = await app_client.get("/coach", params={"coach_id": "x"}, headers=f)
    assert bad.status_code == 422
    missing = await app_client.get("/coach", params={"coach_id": 999}, headers=f)
    assert missing.status_code == 404 and "no coach with id 999" in missing.text
    listing = await app_client.get("/coach", headers=f)
    assert listing.status_code == 200
    assert 'href="/coach?coach_id=1">seeded-coach-1<' in listing.text
    own = await app_client.get("/coach", headers=tokens.headers("coach", "someone-new"))
    assert own.status_code == 200
    assert "Coach page: someone-new" in own.text
    assert 'id="filter-coach"' not in own.text  # a coach sees only their own page


def _transaction_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-transaction="(\d+)"', html)]


@pytest.mark.usefixtures("seeded")
async def test_transactions_newest_first_in_pages(
    app_client: Client,
    tokens: Tokens,
    stripe_mock: respx.MockRouter,
    clean_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_stripe(stripe_mock)
    monkeypatch.setattr(pages_finance, "TRANSACTION_ROWS", 6)
    async with clean_engine.connect() as conn:
        every = [
            int(i)
            for i in (
                await conn.execute(
                    text("SELECT id FROM ledger_transactions ORDER BY occurred_at DESC, id DESC")
                )
            ).scalars()
        ]
    assert len(every) == 14  # three pages of 6
    f = tokens.headers("finance")
    first = (await app_client.get("/finance", headers=f)).text
    assert _transaction_ids(first) == every[:6]
    older = re.search(r'href="([^"]+)" id="older-transactions"', first)
    assert older, "a link to the older page"
    second = (await app_client.get(older.group(1).replace("&amp;", "&"), headers=f)).text
    assert _transaction_ids(second) == every[6:12]
    assert 'id="newest-transactions"' in second
    older = re.search(r'href="([^"]+)" id="older-transactions"', second)
    assert older
    last = (await app_client.get(older.group(1).replace("&amp;", "&"), headers=f)).text
    assert _transaction_ids(last) == every[12:]
    assert 'id="older-transactions"' not in last
    bad = await app_client.get("/finance", params={"before": "nonsense"}, headers=f)
    assert bad.status_code == 200 and 'id="page-error">cursor: ' in bad.text


async def test_a_refused_token_gets_the_form_again(app_client: Client, tokens: Tokens) -> None:
    r = await app_client.post(
        "/auth/session",
        data={"token": "not-a-token", "next": "/finance"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="signin-error">Sign-in failed: token malformed' in r.text
    assert 'name="next" value="/finance"' in r.text  # still going where they were going
    expired = await app_client.post(
        "/auth/session", data={"token": tokens.expired("finance")}, headers=SAME_ORIGIN
    )
    assert expired.status_code == 401 and "token expired" in expired.text
    as_json = await app_client.post(
        "/auth/session", json={"token": "not-a-token"}, headers=SAME_ORIGIN
    )
    assert as_json.status_code == 401
    assert as_json.json()["error"] == "AuthenticationFailed"  # an API client keeps its JSON
    assert "coachpay_session" not in r.headers.get("set-cookie", "")


def test_charts_scale_and_sign() -> None:
    chart = bar_chart(["a", "b"], [("x", [1000, -500])], "usd", width=400, height=200)
    up, down = chart.bars
    assert up.y + up.h == chart.zero_y == down.y  # one above, one below the zero line
    assert up.h == 2 * down.h
    assert chart.y_ticks[0].label.endswith("USD")
    assert bar_chart(["a"], [("x", [0])], "usd").empty
    h = hbar_chart([("paid", 4, "4"), ("failed", 1, "1")])
    assert h.bars[0].w == 4 * h.bars[1].w
