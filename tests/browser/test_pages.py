"""The finance dashboard and the coach page in a real browser, over ``coachpay demo`` data.

Expected totals come from Stripe's side (the emulator's balance transactions
and transfers, read through the public API), not from the ledger the pages
read: the pages must agree with what Stripe saw.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from api.demo import Demo
from core.money import format_amount
from tests.browser.conftest import screenshot_path


async def _stripe_totals(demo: Demo) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    async for bt in demo.runtime.gateway.iter_balance_transactions():
        out[bt.currency][bt.type] += bt.amount
    return out


async def _sign_in(browser: Any, demo: Demo, sub: str, path: str) -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{demo.app_url}{path}")
    assert page.url.startswith(f"{demo.app_url}/?next=")  # not signed in: the sign-in form
    await page.fill("#token", demo.tokens[sub])
    await page.click("#signin-submit")
    await page.wait_for_url(f"{demo.app_url}{path}*")
    return page


async def _text(page: Any, testid: str) -> str:
    return str(await page.inner_text(f'[data-testid="{testid}"]')).strip()


async def test_finance_dashboard(browser: Any, demo: Demo) -> None:
    stripe = await _stripe_totals(demo)
    page = await _sign_in(browser, demo, "finance-demo", "/finance")
    gross_usd = stripe["usd"]["charge"]
    assert gross_usd > 0
    assert await _text(page, "total-usd-gross_volume") == format_amount(gross_usd, "usd")
    assert await _text(page, "total-jpy-gross_volume") == format_amount(
        stripe["jpy"]["charge"], "jpy"
    )
    assert await _text(page, "total-usd-refunds") == format_amount(-stripe["usd"]["refund"], "usd")
    assert await _text(page, "total-usd-payouts_made") == format_amount(
        -stripe["usd"]["transfer"], "usd"
    )
    assert await _text(page, "total-jpy-gross_volume") == f"{stripe['jpy']['charge']} JPY"
    assert await page.inner_text("#recon-status") == "reconciled"
    assert await page.locator("#chart-revenue rect").count() > 0
    assert await page.locator("#chart-payouts rect").count() > 0
    await page.screenshot(path=str(screenshot_path("finance-dashboard.png")), full_page=True)

    # Filter: JPY only, then a period that leaves out day 0.
    await page.select_option("#filter-currency", "jpy")
    await page.click("#apply")
    await page.wait_for_url("**currency=jpy**")
    assert await page.locator('[data-testid="total-usd-gross_volume"]').count() == 0
    assert await _text(page, "total-jpy-gross_volume") == format_amount(
        stripe["jpy"]["charge"], "jpy"
    )
    day1 = (demo.clock.now() - timedelta(days=3)).date().isoformat()
    await page.fill("#filter-from", day1)
    await page.click("#apply")
    await page.wait_for_url(f"**from={day1}**")
    later = await _text(page, "total-jpy-gross_volume")
    assert later != format_amount(stripe["jpy"]["charge"], "jpy")
    assert 0 < int(later.split()[0]) < stripe["jpy"]["charge"]
    await page.screenshot(
        path=str(screenshot_path("finance-dashboard-filtered.png")), full_page=True
    )


async def test_coach_page(browser: Any, demo: Demo) -> None:
    me = await demo.call("GET", "/v1/coaches/me/account", "coach-ana")
    transfers = await demo.runtime.gateway.list_transfers(destination=me["stripe_account_id"])
    paid = sum(t.amount - t.amount_reversed for t in transfers.data)
    assert paid > 0
    page = await _sign_in(browser, demo, "coach-ana", "/coach")
    assert "Coach page: coach-ana" in await page.inner_text("h1")
    assert await _text(page, "balance-usd-paid") == format_amount(paid, "usd")
    balance = await demo.call("GET", "/v1/coaches/me/balance", "coach-ana")
    assert "USD" in await _text(page, "balance-usd-pending")
    assert "Next release" in await page.inner_text("#next-release")
    assert await page.locator("#chart-earnings rect").count() > 0
    earned_all = await _text(page, "earned-usd")
    await page.screenshot(path=str(screenshot_path("coach-page.png")), full_page=True)

    day1 = (demo.clock.now() - timedelta(days=3)).date().isoformat()
    await page.fill("#filter-from", day1)
    await page.click("#apply")
    await page.wait_for_url(f"**from={day1}**")
    earned_later = await _text(page, "earned-usd")
    assert earned_later != earned_all
    assert float(earned_later.split()[0]) < float(earned_all.split()[0])
    assert balance  # the coach API answered for the same coach the page shows
