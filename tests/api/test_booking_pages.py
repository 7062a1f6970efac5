"""A booking's history over the API, and the mentee's pages as the server renders them,
through the app and the in-process Stripe emulator (one app for the module)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.runtime import Runtime
from core.clock import FrozenClock
from core.db import create_engine
from core.settings import Settings, load_settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from tests.api.bookings_support import (
    Client,
    Headers,
    Stripe,
    book,
    mentee,
    onboard_coach,
    paid_booking,
    publish,
)
from tests.api.conftest import CONNECT_SECRET, PLATFORM_SECRET, TEST_JWT_SECRET, StripeSigner
from tests.api.conftest import Tokens as TokenMaker
from tests.conftest import truncate_all


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(seed=23).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def settings(commit_db_url: str, emulator: EmulatorServer) -> Settings:
    return load_settings(
        database_url=commit_db_url,
        stripe_secret_key="sk_test_booking_pages",
        stripe_api_base=emulator.base_url,
        stripe_max_retries=0,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://testserver.local",
        run_jobs=False,
        db_pool_size=5,
    )


@pytest.fixture(scope="module")
async def client(settings: Settings, commit_db_url: str) -> AsyncIterator[Client]:
    engine: AsyncEngine = create_engine(commit_db_url, pool_size=2)
    await truncate_all(engine)
    await engine.dispose()
    gateway = StripeGateway.from_settings(settings)
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    runtime = Runtime(settings, clock=clock, gateway=gateway, webhook_processing="inline")
    app = create_app(settings, runtime=runtime, stop_runtime=True)
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        c.app.state["test_clock"] = clock
        yield c
    with contextlib.suppress(RuntimeError):
        await gateway.aclose()


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> TokenMaker:
    return TokenMaker(settings)


@pytest.fixture(scope="module")
def stripe(emulator: EmulatorServer, client: Client) -> Stripe:
    return Stripe(emulator, client, StripeSigner())


@pytest.fixture(scope="module")
async def coach(client: Client, stripe: Stripe, tokens: TokenMaker) -> Headers:
    return await onboard_coach(client, stripe, tokens)


def _clock(client: Client) -> FrozenClock:
    clock = client.app.state["test_clock"]
    assert isinstance(clock, FrozenClock)
    return clock


async def test_history_for_its_mentee_and_staff_and_nobody_else(
    client: Client, stripe: Stripe, coach: Headers, tokens: TokenMaker
) -> None:
    s = await publish(client, coach, _clock(client))
    me = mentee(tokens)
    b = await paid_booking(client, stripe, s["id"], me)
    r = await client.post(f"/v1/bookings/{b['id']}/refund", json={"amount": 2500}, headers=me)
    assert r.status_code == 201, r.text
    url = f"/v1/bookings/{b['id']}/history"
    own = (await client.get(url, headers=me)).json()
    assert own["booking"] == {
        **own["booking"],
        "status": "partially_refunded", "amount": 10000, "amount_refunded": 2500,
        "refundable_amount": 7500, "currency": "usd", "coaching_session_id": s["id"],
    }  # fmt: skip
    assert [(e["from_status"], e["to_status"]) for e in own["events"]] == [
        (None, "pending"),
        ("pending", "paid"),
        ("paid", "partially_refunded"),
    ]
    assert [e["actor"] for e in own["events"]] == ["user", "stripe", "user"]
    assert all(e["detail"] == {} for e in own["events"])  # fee split: staff only
    for role in ("finance", "admin"):
        staff = (await client.get(url, headers=tokens.headers(role))).json()
        assert staff["events"][2]["detail"]["amount"] == 2500
        assert staff["events"][2]["detail"]["coach_part"] == 2000
    stranger = await client.get(url, headers=mentee(tokens))
    assert (stranger.status_code, stranger.json()["error"]) == (404, "BookingNotFound")
    assert (await client.get(url, headers=coach)).status_code == 403
    assert (await client.get(url)).status_code == 401
    for bad in ("0", str(2**63)):
        assert (await client.get(f"/v1/bookings/{bad}/history", headers=me)).status_code == 422
    assert (await client.get("/v1/bookings/x/history", headers=me)).status_code == 404
    missing = await client.get("/v1/bookings/999999/history", headers=tokens.headers("admin"))
    assert missing.status_code == 404


async def test_booking_page_says_what_stripe_has_told_us(
    client: Client, stripe: Stripe, coach: Headers, tokens: TokenMaker
) -> None:
    s = await publish(client, coach, _clock(client), price=123450)
    me = mentee(tokens)
    b = await book(client, s["id"], me)
    page = f"/bookings/{b['id']}"
    # Back from Checkout before the webhook: waiting, polling, not "paid".
    waiting = (await client.get(page, params={"checkout": "success"}, headers=me)).text
    assert f'data-poll-booking="{b["id"]}"' in waiting and 'id="paid"' not in waiting
    left = (await client.get(page, params={"checkout": "cancelled"}, headers=me)).text
    assert 'id="checkout-left"' in left and 'id="pay"' in left and 'id="cancel"' in left
    await stripe.pay(b["checkout_session_id"], "failed")
    failed = (await client.get(page, headers=me)).text
    assert 'id="payment-failed"' in failed
    assert f'data-post="/v1/bookings/{b["id"]}/retry"' in failed
    retried = await client.post(f"/v1/bookings/{b['id']}/retry", headers=me)
    assert retried.status_code == 200, retried.text
    await stripe.pay(retried.json()["checkout_session_id"])
    paid = (await client.get(page, params={"checkout": "success"}, headers=me)).text
    assert 'id="paid"' in paid and "data-poll-booking" not in paid
    assert 'data-testid="booking-amount">1,234.50 USD<' in paid
    assert 'data-remaining="123450"' in paid and 'data-exponent="2"' in paid
    assert 'id="history"' not in paid  # the history table is for finance staff
    staff = (await client.get(page, headers=tokens.headers("finance"))).text
    assert 'id="history-table"' in staff and "refund-form" not in staff
    other = await client.get(page, headers=mentee(tokens))
    assert other.status_code == 404 and "Not found" in other.text
    assert (await client.get(page, headers=coach)).status_code == 404
    signed_out = await client.get(page, params={"checkout": "success"}, follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == f"/?next=%2Fbookings%2F{b['id']}%3Fcheckout%3Dsuccess"


async def test_sessions_and_bookings_pages(
    client: Client, stripe: Stripe, coach: Headers, tokens: TokenMaker
) -> None:
    clock = _clock(client)
    yen = await publish(client, coach, clock, price=9000, currency="jpy", capacity=2)
    usd = await publish(client, coach, clock, price=4500)
    me = mentee(tokens)
    b = await paid_booking(client, stripe, yen["id"], me)
    html = (await client.get("/sessions", headers=me)).text
    assert f'data-testid="price-{yen["id"]}">9,000 JPY<' in html  # no decimals for yen
    assert f'data-testid="price-{usd["id"]}">45.00 USD<' in html
    assert f'data-testid="seats-{yen["id"]}">1<' in html
    assert f'href="/bookings/{b["id"]}" data-testid="booked-{yen["id"]}"' in html
    assert f'data-post="/v1/sessions/{usd["id"]}/bookings"' in html
    starts = datetime.fromisoformat(usd["starts_at"]).astimezone(UTC)
    assert f'datetime="{starts.isoformat().replace("+00:00", "Z")}"' in html  # UTC for the script
    as_coach = (await client.get("/sessions", headers=coach)).text
    assert "data-post=" not in as_coach  # only mentees book
    mine = (await client.get("/bookings", headers=me)).text
    assert f'data-testid="status-{b["id"]}">paid<' in mine
    assert f'id="refund-{b["id"]}"' in mine  # inside the refund window
    assert (await client.get("/bookings", headers=coach)).status_code == 403
    assert (await client.get("/bookings", follow_redirects=False)).status_code == 303
