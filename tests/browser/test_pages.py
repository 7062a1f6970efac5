"""Every page in a real browser, over ``coachpay demo`` data (one demo for the module).

Each figure a page shows is checked against the API in the same test (and the finance
totals against Stripe's own balance transactions); tables must fit a 1280 px window.
The tests run in file order: the mentee's booking is then in the finance pages.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from api.auth import mint_token
from api.demo import TOKEN_TTL, Demo
from api.finance_views import display_amount
from tests.browser.conftest import clipped, new_page, shot, sign_in, text_of

NEW_YORK = ZoneInfo("America/New_York")
SUMMARY_COLUMNS = (
    "gross_volume", "platform_fees", "processing_fees", "net_platform_revenue", "refunds",
    "disputes", "payouts_made", "payouts_pending", "coach_balances_outstanding",
)  # fmt: skip
story: dict[str, Any] = {}  # what the mentee did, for the finance test to find


def _utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)


def _major(minor: int, exponent: int) -> str:
    whole, frac = divmod(minor, 10**exponent)
    return f"{whole}.{frac:0{exponent}d}" if exponent else str(whole)


async def _coach_ids(demo: Demo) -> dict[int, str]:
    out = {}
    for sub in ("coach-ana", "coach-ben", "coach-kenji"):
        out[(await demo.call("GET", "/v1/coaches/me/account", sub))["coach_id"]] = sub
    return out


async def test_mentee_books_pays_and_asks_for_a_partial_refund(browser: Any, demo: Demo) -> None:
    mentee = "mentee-7"  # no booking yet of the later USD sessions (api/demo.py)
    sessions = (await demo.call("GET", "/v1/sessions", mentee))["data"]
    held = {
        b["coaching_session_id"]
        for b in (await demo.call("GET", "/v1/bookings", mentee))["upcoming"]
    }
    coaches = await _coach_ids(demo)
    target = next(
        s for s in sessions
        if s["id"] not in held and s["currency"] == "usd" and (s["seats_left"] or 0) > 0
        and _utc(s["starts_at"]) > demo.clock.now() + timedelta(days=2)
    )  # fmt: skip
    page = await sign_in(browser, demo, mentee, "/sessions")
    for s in sessions:
        sid = s["id"]
        assert await text_of(page, f"price-{sid}") == display_amount(s["price"], s["currency"])
        assert await text_of(page, f"seats-{sid}") == str(s["seats_left"])
        assert await text_of(page, f"coach-{sid}") == coaches[s["coach_id"]]
    starts = page.locator(f'[data-testid="starts-{target["id"]}"]')
    assert await starts.get_attribute("data-local") == "1"  # formatted by the page script
    local = _utc(target["starts_at"]).astimezone(NEW_YORK)
    assert f"{local:%H:%M}" in await starts.inner_text()
    await shot(page, "mentee-sessions.png")

    # Stripe's webhook held back: the page must say it is waiting, not that it is paid.
    await demo.control("webhooks/pause")
    try:
        await page.click(f"#book-{target['id']}")
        await page.wait_for_url(f"{demo.runtime.stripe_api_base}/_emulator/checkout/**")
        await shot(page, "checkout-emulator.png")
        await page.click('a[href="?outcome=succeeded"]')
        await page.wait_for_url(f"{demo.app_url}/bookings/*?checkout=success")
        booking_id = int(page.url.split("/bookings/")[1].split("?")[0])
        await page.wait_for_selector("#confirming")
        waiting = await demo.call("GET", f"/v1/bookings/{booking_id}/history", mentee)
        assert waiting["booking"]["status"] == "pending"
        assert await page.get_attribute("#booking-status", "data-status") == "pending"
        await shot(page, "booking-confirming.png")
    finally:
        await demo.control("webhooks/resume")
    await demo.settle()
    await page.wait_for_selector("#paid", timeout=30_000)  # the page polled and reloaded
    paid = await demo.call("GET", f"/v1/bookings/{booking_id}/history", mentee)
    b = paid["booking"]
    assert b["status"] == "paid" == await page.get_attribute("#booking-status", "data-status")
    assert await text_of(page, "booking-amount") == display_amount(b["amount"], "usd")
    assert await text_of(page, "booking-refundable") == display_amount(
        b["refundable_amount"], "usd"
    )
    assert await text_of(page, "refund-max") == display_amount(b["refundable_amount"], "usd")
    await shot(page, "booking-paid.png")

    part = b["amount"] // 4
    await page.uncheck("#refund-whole")
    await page.fill("#refund-amount", _major(part, 2))
    await page.click("#refund-submit")
    await page.wait_for_selector("#partially-refunded")
    after = (await demo.call("GET", f"/v1/bookings/{booking_id}/history", mentee))["booking"]
    assert (after["status"], after["amount_refunded"]) == ("partially_refunded", part)
    assert await text_of(page, "booking-refunded") == display_amount(part, "usd")
    assert await text_of(page, "booking-refundable") == display_amount(
        after["refundable_amount"], "usd"
    )
    assert after["refundable_amount"] == b["amount"] - part
    stripe_refunds = [r for r in demo.runtime.emulator.state.refunds.values()  # type: ignore[union-attr]
                      if r.get("metadata", {}).get("booking_id") == str(booking_id)]  # fmt: skip
    assert [r["amount"] for r in stripe_refunds] == [part]  # one refund at Stripe, this much
    await shot(page, "booking-partially-refunded.png")

    await page.goto(f"{demo.app_url}/bookings")
    listed = {x["id"]: x for x in (await demo.call("GET", "/v1/bookings", mentee))["upcoming"]}
    refunded = display_amount(listed[booking_id]["amount_refunded"], "usd")
    assert await text_of(page, f"status-{booking_id}") == f"partially refunded\n{refunded} refunded"
    assert await clipped(page) == []
    await shot(page, "mentee-bookings.png")
    story.update(booking_id=booking_id, mentee=mentee)

    # Someone else's booking is a 404 page; signed out, the sign-in form.
    other = await sign_in(browser, demo, "mentee-4", "/bookings")
    r = await other.goto(f"{demo.app_url}/bookings/{booking_id}")
    assert r.status == 404 and await other.inner_text("#error-heading") == "Not found"
    anonymous = await new_page(browser)
    await anonymous.goto(f"{demo.app_url}/bookings/{booking_id}?checkout=success")
    assert anonymous.url.startswith(f"{demo.app_url}/?next=%2Fbookings%2F{booking_id}")


async def test_a_new_coach_onboards_publishes_and_cancels(browser: Any, demo: Demo) -> None:
    sub = "coach-newcomer"
    demo.tokens[sub] = mint_token(demo.runtime.settings, sub, "coach", TOKEN_TTL)
    page = await sign_in(browser, demo, sub, "/coach")
    assert (await demo.call("GET", "/v1/coaches/me/account", sub))["status"] == "not_started"
    assert await page.get_attribute("#account-status", "data-status") == "not_started"
    assert await page.locator("#publish-session").count() == 0  # not before onboarding
    await shot(page, "coach-not-started.png")

    await page.click("#continue-onboarding")  # Stripe's (the emulator's) onboarding page,
    await page.wait_for_url(f"{demo.app_url}/coach?onboarding=return")  # then back here
    account = await demo.call("GET", "/v1/coaches/me/account", sub)
    assert account["status"] == "active"
    assert await page.get_attribute("#account-status", "data-status") == "active"
    assert await page.locator("#onboarding-returned").is_visible()
    await shot(page, "coach-active.png")

    # Publish a session: its start typed in New York time, as this browser lives there.
    starts = (
        (demo.clock.now() + timedelta(days=5)).astimezone(NEW_YORK).replace(second=0, microsecond=0)
    )
    if await page.get_attribute("#publish", "open") is None:
        await page.click("#publish summary")
    await page.fill("#publish-session [name=title]", "Portfolio review")
    await page.fill("#publish-session [name=starts_at]", f"{starts:%Y-%m-%dT%H:%M}")
    await page.fill("#publish-session [name=duration]", "45")
    await page.fill("#publish-session [name=price]", "1234.50")
    await page.select_option("#publish-session [name=currency]", "usd")
    await page.fill("#publish-session [name=capacity]", "4")
    await page.click("#publish-submit")
    await page.wait_for_selector("#sessions-table")
    made = (await demo.call("GET", f"/v1/sessions?coach_id={account['coach_id']}", sub))["data"]
    [s] = made
    assert (s["price"], s["currency"], s["capacity"]) == (123450, "usd", 4)
    assert _utc(s["starts_at"]) == starts.astimezone(UTC)
    assert _utc(s["ends_at"]) - _utc(s["starts_at"]) == timedelta(minutes=45)
    assert await text_of(page, f"seats-{s['id']}") == f"{s['seats_taken']} / 4"
    assert "1,234.50 USD" in await page.inner_text(f'tr[data-session="{s["id"]}"]')

    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click(f"#cancel-session-{s['id']}")
    await page.wait_for_selector(f'tr[data-session="{s["id"]}"] .badge.bad')
    gone = await demo.call("GET", f"/v1/sessions/{s['id']}", sub)
    assert gone["status"] == "cancelled"
    await shot(page, "coach-session-cancelled.png")

    await page.click("#open-dashboard")  # a fresh login link, asked for on the click
    await page.wait_for_url(f"{demo.runtime.stripe_api_base}/_emulator/dashboard/**")


async def test_coach_page(browser: Any, demo: Demo) -> None:
    coach = "coach-ana"
    page = await sign_in(browser, demo, coach, "/coach")
    assert "Coach page: coach-ana" in await page.inner_text("h1")
    balance = await demo.call("GET", "/v1/coaches/me/balance", coach)
    assert balance["balances"]
    for b in balance["balances"]:
        c = b["currency"]
        for field, testid in (("pending", "pending"), ("available", "available"),
                              ("in_transit", "in_transit"), ("paid_out", "paid")):  # fmt: skip
            assert await text_of(page, f"balance-{c}-{testid}") == display_amount(b[field], c)
        # Earned, all time: net of the partial refund and the lost dispute, as the API says.
        assert await text_of(page, f"earned-{c}") == display_amount(b["lifetime_earnings"], c)
        if b["next_release_at"]:
            shown = await text_of(page, f"next-release-{c}")
            assert shown.startswith(display_amount(b["next_release_amount"], c))
        assert await page.locator(f"#chart-earnings-{c} rect").count() > 0
    earnings = (await demo.call("GET", "/v1/coaches/me/earnings", coach))["data"]
    for e in earnings:  # every refund in the demo came before release
        net = display_amount(e["share"] - e["reduced_before_release"], e["currency"])
        assert await text_of(page, f"earning-{e['id']}-net") == net
    for row in await page.locator("#sessions-table li[data-booking]").all():
        booking = int(await row.get_attribute("data-booking") or 0)
        state = await demo.call("GET", f"/v1/bookings/{booking}/history", "finance-demo")
        assert state["booking"]["status"].replace("_", " ") in await row.inner_text()
    assert await clipped(page) == []
    await shot(page, "coach-page.png")

    day1 = (demo.clock.now() - timedelta(days=3)).date().isoformat()
    await page.fill("#filter-from", day1)
    await page.click("#apply")
    await page.wait_for_url(f"**from={day1}**")
    later = await text_of(page, "earned-usd")
    assert later != await text_of(page, "balance-usd-paid")
    usd = next(b for b in balance["balances"] if b["currency"] == "usd")
    assert 0 < float(later.split()[0].replace(",", "")) < usd["lifetime_earnings"] / 100


async def _stripe_totals(demo: Demo) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    async for bt in demo.runtime.gateway.iter_balance_transactions():
        out[bt.currency][bt.type] += bt.amount
    return out


async def test_finance_dashboard(browser: Any, demo: Demo) -> None:
    stripe = await _stripe_totals(demo)
    page = await sign_in(browser, demo, "finance-demo", "/finance")
    api = await demo.call("GET", "/v1/finance/summary", "finance-demo")
    for t in api["totals"]:
        c = t["currency"]
        for key in SUMMARY_COLUMNS:
            assert await text_of(page, f"total-{c}-{key}") == display_amount(t[key], c), key
        n = t["payments"]
        assert await text_of(page, f"total-{c}-payments") == f"{n:,} payment{'s' if n != 1 else ''}"
    by = {t["currency"]: t for t in api["totals"]}
    assert by["usd"]["gross_volume"] == stripe["usd"]["charge"]  # the pages agree with Stripe
    assert by["usd"]["refunds"] == -stripe["usd"]["refund"]
    assert by["jpy"]["gross_volume"] == stripe["jpy"]["charge"]
    assert await page.inner_text("#recon-status") == "reconciled"
    for c in by:
        assert await page.locator(f"#chart-revenue-{c} rect").count() > 0
    assert await page.locator("#chart-payouts rect").count() > 0
    assert await clipped(page) == []  # the Totals' "Owed to coaches" column included
    # Newest first: the page's rows are the API's (oldest first) from the end.
    listed = (await demo.call("GET", "/v1/finance/transactions?limit=500", "finance-demo"))["data"]
    shown = [int(x) for x in await page.locator("tr[data-transaction]").evaluate_all(
        "rows => rows.map(r => r.dataset.transaction)")]  # fmt: skip
    assert shown == [t["id"] for t in reversed(listed)][: len(shown)] and len(shown) == 25
    await shot(page, "finance-dashboard.png")

    # The mentee's booking, its refund the newest transaction, and its history.
    if story:
        link = page.locator(f'#transactions a[href="/bookings/{story["booking_id"]}"]').first
        await link.click()
        await page.wait_for_selector("#history-table")
        history = await demo.call("GET", f"/v1/bookings/{story['booking_id']}/history",
                                  "finance-demo")  # fmt: skip
        rows = page.locator("#history-table tr[data-event]")
        assert await rows.count() == len(history["events"]) >= 3  # booked, paid, refunded
        assert [e["to_status"].replace("_", " ") for e in history["events"]] == [
            (await r.inner_text()).split("\t")[2].strip() for r in await rows.all()
        ]
        assert await clipped(page) == []
        await shot(page, "booking-history.png")
        await page.go_back()

    await page.select_option("#filter-currency", "jpy")
    await page.click("#apply")
    await page.wait_for_url("**currency=jpy**")
    assert await page.locator('[data-testid="total-usd-gross_volume"]').count() == 0
    assert await text_of(page, "total-jpy-gross_volume") == display_amount(
        stripe["jpy"]["charge"], "jpy"
    )
    await shot(page, "finance-dashboard-jpy.png")


async def test_schema_works_offline_with_the_bearer_scheme(browser: Any, demo: Demo) -> None:
    page = await new_page(browser)
    outside: list[str] = []

    async def only_here(route: Any) -> None:
        if route.request.url.startswith(demo.app_url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_here)
    await page.goto(f"{demo.app_url}/schema")
    await page.wait_for_selector(".swagger-ui .info .title")
    assert "coachpay" in await page.inner_text(".swagger-ui .info .title")
    assert outside == []  # no CDN: every asset came from the app
    await page.click("button.authorize")
    await page.fill(".modal-ux input[type=text]", demo.tokens["mentee-1"])
    await page.click(".modal-ux button.authorize")
    await page.click(".modal-ux button.btn-done")
    op = (
        page.locator("#operations-sessions-list_sessions_v1_sessions_get, .opblock-get")
        .filter(has=page.locator('[data-path="/v1/sessions"]'))
        .first
    )
    await op.locator(".opblock-summary").click()
    await op.locator("button.try-out__btn").click()
    await op.locator("button.execute").click()
    status = op.locator(".live-responses-table tbody .response-col_status").first
    await status.wait_for()
    assert (await status.inner_text()).strip() == "200"
    await shot(page, "schema.png")


async def _park(demo: Demo, stripe_event_id: str) -> None:
    """A poison Stripe event, parked as the inbox parks one: stored, then failing."""
    from core.inbox_failures import record_failure
    from core.inbox_models import WebhookEvent

    factory = demo.runtime.context.factory
    now = demo.clock.now()
    async with factory() as db, db.begin():
        row = WebhookEvent(stripe_event_id=stripe_event_id, endpoint="platform",
                           type="charge.refunded", payload={"id": stripe_event_id},
                           received_at=now, next_attempt_at=None)  # fmt: skip
        db.add(row)
        await db.flush()
        row_id = row.id
    settings = demo.runtime.context.settings
    for _ in range(settings.webhook_max_handler_failures):
        await record_failure(factory, row_id, KeyError("charge"), now=now, settings=settings)


async def test_admin_page_webhooks_receiver_and_parked_events(browser: Any, demo: Demo) -> None:
    admin, ep_id, receiver = "admin-demo", demo.endpoint_id, demo.receiver
    assert ep_id is not None and receiver is not None
    await demo.deliver_events()  # what the earlier tests' bookings emitted
    page = await sign_in(browser, demo, admin, "/admin")
    ep = await demo.call("GET", f"/v1/admin/events/endpoints/{ep_id}", admin)
    assert await text_of(page, f"endpoint-{ep_id}-url") == ep["url"] == receiver.url
    assert await text_of(page, f"endpoint-{ep_id}-enabled") == "enabled"
    health = await demo.call("GET", "/v1/admin/events/health", admin)
    for key in ("endpoints", "enabled", "failing", "pending", "delivered_24h", "fan_out_lag"):
        assert await text_of(page, f"health-{key}") == f"{health[key]:,}", key
    assert health["delivered_24h"] > 0 and health["pending"] == 0
    paid = (await demo.call("GET", "/v1/admin/events?type=booking.paid&limit=500", admin))["data"]
    assert len(paid) > 8  # the demo's paid bookings and the mentee's
    for action in ("calendar_entry_created", "confirmation_sent"):
        rows = page.locator(f'#receiver-lines tr[data-action="{action}"]')
        assert sorted(await rows.evaluate_all("r => r.map(x => x.dataset.line)")) == sorted(
            e["id"] for e in paid
        )
    newest = page.locator("#receiver-lines tbody tr").first
    assert await newest.get_attribute("data-line") == paid[-1]["id"]
    assert await clipped(page) == []
    await shot(page, "admin.png")

    await page.click(f"#toggle-{ep_id}")  # disable
    await page.wait_for_selector(f'#toggle-{ep_id}[data-endpoint-enable="true"]')
    off = await demo.call("GET", f"/v1/admin/events/endpoints/{ep_id}", admin)
    assert off["enabled"] is False
    reason = await text_of(page, f"endpoint-{ep_id}-disabled")
    assert reason.startswith(off["disabled_reason"])
    await page.click(f"#toggle-{ep_id}")  # enable again
    await page.wait_for_selector(f'#toggle-{ep_id}[data-endpoint-enable="false"]')
    assert (await demo.call("GET", f"/v1/admin/events/endpoints/{ep_id}", admin))["enabled"]

    # Replay everything of the last week (the form takes the viewer's New York time).
    start, end = demo.clock.now() - timedelta(days=7), demo.clock.now() + timedelta(hours=1)
    form = page.locator(f"#replay-{ep_id}")
    await form.locator("[name=from]").fill(f"{start.astimezone(NEW_YORK):%Y-%m-%dT%H:%M}")
    await form.locator("[name=to]").fill(f"{end.astimezone(NEW_YORK):%Y-%m-%dT%H:%M}")
    await form.locator("[type=submit]").click()
    said = page.locator(f'[data-endpoint="{ep_id}"] .message.ok')
    await said.wait_for()
    every, cursor = [], ""
    while True:
        got = await demo.call("GET", f"/v1/admin/events?limit=500&after={cursor}", admin)
        every += got["data"]
        if not got["data"]:
            break
        cursor = got["next_cursor"]
    wanted = [e for e in every if e["type"] in ep["event_types"]]
    assert (await said.inner_text()).startswith(f"{len(wanted)} deliveries queued")
    lines, received = len(receiver.lines), receiver.received
    await demo.deliver_events()
    assert receiver.received == received + len(wanted)  # sent again, same webhook-ids:
    assert len(receiver.lines) == lines  # nothing done twice
    await page.goto(f"{demo.app_url}/admin?log={ep_id}")
    log = (await demo.call("GET", f"/v1/admin/events/endpoints/{ep_id}/attempts?limit=50",
                           admin))["data"]  # fmt: skip
    shown = page.locator("#attempts-table tbody tr")
    assert await shown.count() == len(log) > 0
    first = shown.first
    assert await first.get_attribute("data-attempt") == str(log[0]["id"])
    assert f"{log[0]['latency_ms']} ms" in await first.inner_text()
    assert await clipped(page) == []
    await shot(page, "admin-delivery-log.png")

    await _park(demo, "evt_demo_poison")
    await page.goto(f"{demo.app_url}/admin")
    failed = await demo.call("GET", "/v1/admin/webhooks/failed", admin)
    assert [e["event_id"] for e in failed["data"]] == ["evt_demo_poison"]
    assert await text_of(page, "parked-total") == str(failed["parked"]) == "1"
    row = page.locator('tr[data-parked="evt_demo_poison"]')
    assert "KeyError" in await row.inner_text()
    await shot(page, "admin-parked.png")
    await row.locator("button[data-post]").click()
    await page.wait_for_selector("#parked-none")
    assert (await demo.call("GET", "/v1/admin/webhooks/failed", admin))["parked"] == 0
    async with demo.runtime.context.factory() as db:
        replays = await db.scalar(
            text("SELECT replays FROM webhook_events WHERE stripe_event_id = 'evt_demo_poison'")
        )
    assert replays == 1
