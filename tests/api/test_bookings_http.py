"""Bookings over HTTP, through the app and the in-process Stripe emulator.

One app, one emulator and one clock for the whole module (see
tests/api/bookings_support.py): each test makes its own people and sessions.
Every state change is checked in booking_events; every refused request is
checked to have written nothing, here or at Stripe.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
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
    audit,
    book,
    booking_row,
    mentee,
    onboard_coach,
    paid_booking,
    publish,
    shifted,
    snapshot,
    user_id,
)
from tests.api.conftest import (
    CONNECT_SECRET,
    PLATFORM_SECRET,
    TEST_JWT_SECRET,
    StripeSigner,
    Tokens,
)
from tests.conftest import truncate_all


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(seed=17).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def settings(commit_db_url: str, emulator: EmulatorServer) -> Settings:
    return load_settings(
        database_url=commit_db_url,
        stripe_secret_key="sk_test_bookings_http",
        stripe_api_base=emulator.base_url,
        stripe_max_retries=0,
        stripe_timeout_seconds=10,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://testserver.local",
        run_jobs=False,
        db_pool_size=5,
        platform_fee_bps=2000,
    )


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    # Real now: the emulator checks Checkout expiry against the real clock.
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
async def engine(commit_db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(commit_db_url, pool_size=2)
    await truncate_all(eng)  # once: ids and counts of other modules stay out
    yield eng
    await eng.dispose()


@pytest.fixture(scope="module")
async def client(
    settings: Settings, clock: FrozenClock, engine: AsyncEngine
) -> AsyncIterator[Client]:
    gateway = StripeGateway.from_settings(settings)
    runtime = Runtime(settings, clock=clock, gateway=gateway, webhook_processing="inline")
    app = create_app(settings, runtime=runtime, stop_runtime=True)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c
    with contextlib.suppress(RuntimeError):
        await gateway.aclose()


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings)


@pytest.fixture(scope="module")
def stripe(emulator: EmulatorServer, client: Client) -> Stripe:
    return Stripe(emulator, client, StripeSigner())


@pytest.fixture(scope="module")
async def coach(client: Client, stripe: Stripe, tokens: Tokens) -> Headers:
    return await onboard_coach(client, stripe, tokens)


# ---- booking ------------------------------------------------------------------------------------


async def test_booking_answers_checkout_url_and_stripe_session_carries_group_metadata_expiry(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock, price=12345)
    me = mentee(tokens)
    b = await book(client, session["id"], me)

    assert b["status"] == "pending" and b["amount"] == 12345 and b["currency"] == "usd"
    assert b["checkout_url"].startswith(stripe.emulator.base_url)
    cs = stripe.checkout(b["checkout_session_id"])
    assert cs["url"] == b["checkout_url"] and cs["status"] == "open"
    assert cs["amount_total"] == 12345 and cs["currency"] == "usd"
    me_id, coach_id = await user_id(engine, me), await user_id(engine, coach)
    expected_meta = {
        "booking_id": str(b["id"]),
        "coaching_session_id": str(session["id"]),
        "coach_id": str(coach_id),
        "mentee_id": str(me_id),
        "attempt": "1",
    }
    assert cs["metadata"] == expected_meta
    assert cs["client_reference_id"] == str(b["id"])
    pi_data = stripe.pi_settings(b["checkout_session_id"])
    assert pi_data["transfer_group"] == f"booking_{b['id']}"
    assert pi_data["metadata"] == expected_meta
    # Expiry: Stripe's minimum (30 min) plus slack, and the seat is held exactly that long.
    ahead = cs["expires_at"] - clock.now().timestamp()
    assert 30 * 60 <= ahead <= 35 * 60
    assert datetime.fromisoformat(b["hold_expires_at"]).timestamp() == cs["expires_at"]
    assert await audit(engine, b["id"]) == [(None, "pending", "user", me_id, "booked")]

    # Paid: the PaymentIntent Stripe made carries the transfer group and metadata.
    await stripe.pay(b["checkout_session_id"])
    pi = stripe.emulator.state.payment_intents[
        stripe.checkout(b["checkout_session_id"])["payment_intent"]
    ]
    assert pi["transfer_group"] == f"booking_{b['id']}" and pi["amount"] == 12345
    assert pi["metadata"]["booking_id"] == str(b["id"])
    assert [e[:3] for e in await audit(engine, b["id"])][-1] == ("pending", "paid", "stripe")


async def test_second_active_booking_same_mentee_same_session_is_409_and_writes_nothing(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    me = mentee(tokens)
    first = await book(client, session["id"], me)
    before = await snapshot(engine, stripe)
    r = await client.post(f"/v1/sessions/{session['id']}/bookings", headers=me)
    assert r.status_code == 409 and r.json()["error"] == "AlreadyBooked", r.text
    assert await snapshot(engine, stripe) == before
    # Paid, it is still the mentee's active booking.
    await stripe.pay(first["checkout_session_id"])
    r = await client.post(f"/v1/sessions/{session['id']}/bookings", headers=me)
    assert r.status_code == 409 and r.json()["error"] == "AlreadyBooked", r.text


async def test_pending_booking_holds_the_seat_until_its_checkout_expires(
    client: Client, stripe: Stripe, coach: Headers, tokens: Tokens, clock: FrozenClock
) -> None:
    session = await publish(client, coach, clock, capacity=1)
    first = await book(client, session["id"], mentee(tokens))
    late = mentee(tokens)
    r = await client.post(f"/v1/sessions/{session['id']}/bookings", headers=late)
    assert r.status_code == 409 and r.json()["error"] == "SessionFull", r.text
    hold = datetime.fromisoformat(first["hold_expires_at"]) - clock.now()
    with shifted(clock, hold + timedelta(seconds=1)):
        taken = await book(client, session["id"], late)
    assert taken["status"] == "pending"


# ---- cancel -------------------------------------------------------------------------------------


async def test_cancel_pending_frees_the_seat_and_expires_its_checkout(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock, capacity=1)
    me, other = mentee(tokens), mentee(tokens)
    b = await book(client, session["id"], me)
    r = await client.post(f"/v1/sessions/{session['id']}/bookings", headers=other)
    assert r.status_code == 409 and r.json()["error"] == "SessionFull"

    r = await client.post(f"/v1/bookings/{b['id']}/cancel", headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["checkout_url"] is None  # expired at Stripe: nothing left to pay
    assert stripe.checkout(b["checkout_session_id"])["status"] == "expired"
    me_id = await user_id(engine, me)
    assert (await audit(engine, b["id"]))[-1] == (
        "pending",
        "cancelled",
        "user",
        me_id,
        "cancelled_by_user",
    )
    # Stripe's checkout.session.expired for it changes nothing more.
    assert "checkout.session.expired" in await stripe.flush()
    assert len(await audit(engine, b["id"])) == 2
    assert (await booking_row(client, b["id"], me))["status"] == "cancelled"

    # The seat is free: another mentee takes it, and the session shows it taken once.
    taken = await book(client, session["id"], other)
    assert taken["status"] == "pending"
    seats = (await client.get(f"/v1/sessions/{session['id']}", headers=other)).json()
    assert seats["seats_taken"] == 1 and seats["seats_left"] == 0
    # Cancelling twice is a state conflict, not a second audit row.
    r = await client.post(f"/v1/bookings/{b['id']}/cancel", headers=me)
    assert r.status_code == 409
    assert len(await audit(engine, b["id"])) == 2


async def test_cancel_paid_booking_is_409_ask_for_a_refund(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, session["id"], me)
    before = await snapshot(engine, stripe)
    r = await client.post(f"/v1/bookings/{paid['id']}/cancel", headers=me)
    assert r.status_code == 409 and r.json()["error"] == "BookingStateConflict", r.text
    assert await snapshot(engine, stripe) == before

    # Paid at Stripe, its webhook not here yet: still 409, and the payment is then booked.
    b = await book(client, (await publish(client, coach, clock))["id"], me)
    stripe.emulator.control("POST", f"checkout/sessions/{b['checkout_session_id']}/pay", {})
    r = await client.post(f"/v1/bookings/{b['id']}/cancel", headers=me)
    assert r.status_code == 409 and "refund" in r.json()["detail"], r.text
    assert [e[1] for e in await audit(engine, b["id"])] == ["pending"]
    await stripe.flush()
    assert (await booking_row(client, b["id"], me))["status"] == "paid"


async def test_someone_elses_booking_cannot_be_cancelled_retried_or_refunded(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    owner, intruder = mentee(tokens), mentee(tokens)
    pending = await book(client, session["id"], owner)
    failed = await book(client, (await publish(client, coach, clock))["id"], owner)
    await stripe.pay(failed["checkout_session_id"], "failed")
    assert (await booking_row(client, failed["id"], owner))["status"] == "failed"
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], owner)
    other_coach = await onboard_coach(client, stripe, tokens)

    before = await snapshot(engine, stripe)
    attempts = [
        (intruder, f"/v1/bookings/{pending['id']}/cancel", (403, 404)),
        (intruder, f"/v1/bookings/{failed['id']}/cancel", (403, 404)),
        (intruder, f"/v1/bookings/{failed['id']}/retry", (403, 404)),
        (intruder, f"/v1/bookings/{paid['id']}/refund", (403, 404)),
        (other_coach, f"/v1/bookings/{paid['id']}/refund", (403, 404)),
        (coach, f"/v1/bookings/{pending['id']}/cancel", (403,)),  # mentee-only route
        (intruder, "/v1/bookings/987654321/cancel", (404,)),
        (intruder, "/v1/bookings/987654321/retry", (404,)),
    ]
    for who, url, codes in attempts:
        r = await client.post(url, json={}, headers=who)
        assert r.status_code in codes, (url, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"}
    # Nothing here, nothing at Stripe: the owner's checkout is still open.
    assert await snapshot(engine, stripe) == before
    assert stripe.checkout(pending["checkout_session_id"])["status"] == "open"
    listed = (await client.get("/v1/bookings", headers=intruder)).json()
    assert listed == {"upcoming": [], "past": []}


# ---- retry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["failed", "async_failed"])
async def test_retry_after_failed_payment_gets_a_new_checkout(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    outcome: str,
) -> None:
    session = await publish(client, coach, clock)
    me = mentee(tokens)
    b = await book(client, session["id"], me)
    me_id = await user_id(engine, me)
    # Retrying a PENDING booking: 409, nothing written.
    before = await snapshot(engine, stripe)
    r = await client.post(f"/v1/bookings/{b['id']}/retry", headers=me)
    assert r.status_code == 409 and r.json()["error"] == "BookingStateConflict", r.text
    assert await snapshot(engine, stripe) == before

    await stripe.pay(b["checkout_session_id"], outcome)
    row = await booking_row(client, b["id"], me)
    assert row["status"] == "failed" and row["checkout_url"] is None
    assert (await audit(engine, b["id"]))[-1][:3] == ("pending", "failed", "stripe")

    r = await client.post(f"/v1/bookings/{b['id']}/retry", headers=me)
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["status"] == "pending" and again["id"] == b["id"]
    assert again["checkout_session_id"] != b["checkout_session_id"]
    assert again["checkout_url"] != b["checkout_url"]
    assert again["amount"] == b["amount"]
    new_cs = stripe.checkout(again["checkout_session_id"])
    assert new_cs["status"] == "open" and new_cs["url"] == again["checkout_url"]
    assert new_cs["metadata"]["attempt"] == "2"
    assert (
        stripe.pi_settings(again["checkout_session_id"])["transfer_group"] == f"booking_{b['id']}"
    )
    # The old attempt cannot be paid any more (an open one is expired at Stripe).
    assert stripe.checkout(b["checkout_session_id"])["status"] in ("expired", "complete")
    last = (await audit(engine, b["id"]))[-1]
    assert last == ("failed", "pending", "user", me_id, "retry")

    await stripe.flush()  # the old session's expiry says nothing about the new attempt
    assert (await booking_row(client, b["id"], me))["status"] == "pending"
    await stripe.pay(again["checkout_session_id"])
    assert (await booking_row(client, b["id"], me))["status"] == "paid"
    # Retrying a PAID booking: 409, nothing written.
    before = await snapshot(engine, stripe)
    r = await client.post(f"/v1/bookings/{b['id']}/retry", headers=me)
    assert r.status_code == 409, r.text
    assert await snapshot(engine, stripe) == before
    statuses = [e[1] for e in await audit(engine, b["id"])]
    assert statuses == ["pending", "failed", "pending", "paid"]


# ---- listing ------------------------------------------------------------------------------------


async def test_list_splits_upcoming_and_past_and_offers_the_coach_again(
    client: Client,
    stripe: Stripe,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    coach = await onboard_coach(client, stripe, tokens)
    me = mentee(tokens)
    attended = await paid_booking(
        client, stripe, (await publish(client, coach, clock, days=2))["id"], me
    )
    coming = await paid_booking(
        client, stripe, (await publish(client, coach, clock, days=10))["id"], me
    )
    full = await publish(client, coach, clock, days=12, capacity=1)
    await paid_booking(client, stripe, full["id"], mentee(tokens))
    open_later = await publish(client, coach, clock, days=20, capacity=3)
    dropped = await book(client, open_later["id"], me)
    assert (
        await client.post(f"/v1/bookings/{dropped['id']}/cancel", headers=me)
    ).status_code == 200

    with shifted(clock, timedelta(days=5)):  # the first session is over, the rest ahead
        r = await client.get("/v1/bookings", headers=me)
    assert r.status_code == 200, r.text
    upcoming, past = r.json()["upcoming"], r.json()["past"]
    assert [b["id"] for b in upcoming] == [coming["id"]]
    assert {b["id"] for b in past} == {attended["id"], dropped["id"]}
    over = next(b for b in past if b["id"] == attended["id"])
    assert over["status"] == "paid" and over["checkout_url"] is None
    # To book the coach again: a session of theirs still ahead with a seat, not the one
    # this mentee already holds, not a full one.
    assert over["next_session_id"] == open_later["id"], over
    assert over["book_again_url"] == f"/v1/sessions/{open_later['id']}/bookings"
    again = await book(client, over["next_session_id"], me)
    assert again["coaching_session_id"] == open_later["id"]


async def test_list_shows_upcoming_bookings_of_a_mentee_with_a_long_history(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    me = mentee(tokens)
    ahead = await book(client, (await publish(client, coach, clock))["id"], me)
    me_id, coach_id = await user_id(engine, me), await user_id(engine, coach)
    # 150 cancelled bookings of a session long past (written directly: the API
    # cannot publish a session in the past).
    async with engine.begin() as conn:
        old = (
            await conn.execute(
                text(
                    "INSERT INTO coaching_sessions (coach_id, title, starts_at, ends_at, price,"
                    " currency, refund_window_hours) VALUES (:c, 'Old', now() - interval '90 days',"
                    " now() - interval '89 days', 1000, 'usd', 24) RETURNING id"
                ),
                {"c": coach_id},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO bookings (coaching_session_id, mentee_id, coach_id, status, amount,"
                " currency, fee_bps) SELECT :s, :m, :c, 'cancelled', 1000, 'usd', 2000"
                " FROM generate_series(1, 150)"
            ),
            {"s": old, "m": me_id, "c": coach_id},
        )
    r = await client.get("/v1/bookings", headers=me)
    assert [b["id"] for b in r.json()["upcoming"]] == [ahead["id"]]
    assert len(r.json()["past"]) >= 1


# ---- refunds ------------------------------------------------------------------------------------


async def test_refund_beyond_paid_is_409_and_partial_refunds_add_up(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], me)
    me_id = await user_id(engine, me)
    url = f"/v1/bookings/{paid['id']}/refund"
    before = await snapshot(engine, stripe)
    r = await client.post(url, json={"amount": 10001}, headers=me)
    assert r.status_code == 409 and r.json()["error"] == "RefundTooLarge", r.text
    assert await snapshot(engine, stripe) == before

    r = await client.post(url, json={"amount": 4000, "reason": "can only stay half"}, headers=me)
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["amount"], first["platform_fee_part"], first["coach_part"]) == (4000, 800, 3200)
    assert (await audit(engine, paid["id"]))[-1] == (
        "paid",
        "partially_refunded",
        "user",
        me_id,
        "refund:api",
    )
    await stripe.flush()  # refund.created, charge.refunded: booked already, once
    r = await client.post(url, json={"amount": 6001}, headers=me)
    assert r.status_code == 409, r.text
    r = await client.post(url, json={}, headers=me)  # the rest
    assert r.status_code == 201 and r.json()["amount"] == 6000, r.text
    await stripe.flush()
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text("SELECT amount FROM refunds WHERE booking_id = :b ORDER BY id"),
                    {"b": paid["id"]},
                )
            )
            .scalars()
            .all()
        )
    assert list(rows) == [4000, 6000]
    assert len(stripe.refunds_of(first_pi := _pi(stripe, paid))) == 2, first_pi
    row = await booking_row(client, paid["id"], me)
    assert row["status"] == "refunded" and row["amount_refunded"] == 10000
    r = await client.post(url, json={"amount": 1}, headers=me)
    assert r.status_code == 409


def _pi(stripe: Stripe, booking: dict[str, Any]) -> str:
    with stripe.emulator.state.lock:
        for cs in stripe.emulator.state.checkout_sessions.values():
            if cs["metadata"].get("booking_id") == str(booking["id"]) and cs["payment_intent"]:
                return str(cs["payment_intent"])
    raise AssertionError("no payment")


async def test_refund_window_closed_for_the_mentee_open_for_the_coach(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    # Starts in 3 days, refunds close 100 h before: closed already for the mentee.
    session = await publish(client, coach, clock, days=3, refund_window_hours=100)
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, session["id"], me)
    assert datetime.fromisoformat(paid["refundable_until"]) < clock.now()
    url = f"/v1/bookings/{paid['id']}/refund"
    before = await snapshot(engine, stripe)
    r = await client.post(url, json={}, headers=me)
    assert r.status_code == 403 and r.json()["error"] == "RefundWindowClosed", r.text
    assert await snapshot(engine, stripe) == before

    r = await client.post(url, json={"reason": "coach is ill"}, headers=coach)
    assert r.status_code == 201 and r.json()["amount"] == 10000, r.text
    coach_id = await user_id(engine, coach)
    assert (await audit(engine, paid["id"]))[-1] == (
        "paid",
        "refunded",
        "user",
        coach_id,
        "refund:api",
    )
    assert len(stripe.refunds_of(_pi(stripe, paid))) == 1


async def test_refund_retried_with_the_same_idempotency_key_refunds_once(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], me)
    url = f"/v1/bookings/{paid['id']}/refund"
    key = {"Idempotency-Key": f"refund-{paid['id']}-a", **me}
    first = await client.post(url, json={"amount": 2500}, headers=key)
    assert first.status_code == 201, first.text
    await stripe.flush()  # the webhook books nothing more
    again = await client.post(url, json={"amount": 2500}, headers=key)
    assert again.status_code == 201, again.text
    assert again.json()["stripe_refund_id"] == first.json()["stripe_refund_id"]
    assert again.json()["id"] == first.json()["id"]
    assert len(stripe.refunds_of(_pi(stripe, paid))) == 1
    events = [e[1] for e in await audit(engine, paid["id"])]
    assert events == ["pending", "paid", "partially_refunded"]
    row = await booking_row(client, paid["id"], me)
    assert row["amount_refunded"] == 2500
    # Another key is another refund.
    other = await client.post(
        url, json={"amount": 2500}, headers={"Idempotency-Key": f"refund-{paid['id']}-b", **me}
    )
    assert other.status_code == 201, other.text
    assert other.json()["stripe_refund_id"] != first.json()["stripe_refund_id"]
    assert (await booking_row(client, paid["id"], me))["amount_refunded"] == 5000


# ---- bad input ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def victim(
    client: Client, stripe: Stripe, coach: Headers, tokens: Tokens, clock: FrozenClock
) -> tuple[dict[str, Any], Headers]:
    """A paid booking in its refund window, and its mentee: a valid request would refund it."""
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], me)
    return paid, me


HOSTILE = "'; DROP TABLE refunds; --"
BAD_REFUNDS: list[tuple[str, Any, dict[str, str]]] = [
    ("amount", {"amount": "100"}, {}),
    ("amount", {"amount": -1}, {}),
    ("amount", {"amount": 0}, {}),
    ("amount", {"amount": 10**16}, {}),
    ("amount", {"amount": 2**64}, {}),
    ("amount", {"amount": 1.5}, {}),
    ("amount", {"amount": True}, {}),
    ("amount", {"amount": [100]}, {}),
    ("amount", {"amount": HOSTILE}, {}),
    ("reason", {"reason": 42}, {}),
    ("reason", {"reason": ["why"]}, {}),
    ("reason", {"reason": "x" * 501}, {}),
    ("reason", {"reason": "bad\x00byte"}, {}),
    ("reason", {"reason": "bell\x07 and \x1b[31mred"}, {}),
    ("extra", {"amount": 100, "extra": 1}, {}),
    ("Amount", {"Amount": 100}, {}),
    ("Idempotency-Key", {}, {"Idempotency-Key": "k" * 201}),
    ("Idempotency-Key", {}, {"Idempotency-Key": "has space"}),
    ("Idempotency-Key", {}, {"Idempotency-Key": HOSTILE}),
]


@pytest.mark.parametrize(("field", "body", "extra_headers"), BAD_REFUNDS)
async def test_refund_bad_input_is_422_naming_the_field_and_writes_nothing(
    client: Client,
    stripe: Stripe,
    engine: AsyncEngine,
    victim: tuple[dict[str, Any], Headers],
    field: str,
    body: Any,
    extra_headers: dict[str, str],
) -> None:
    paid, me = victim
    before = await snapshot(engine, stripe)
    r = await client.post(
        f"/v1/bookings/{paid['id']}/refund", json=body, headers={**me, **extra_headers}
    )
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"], r.text
    assert await snapshot(engine, stripe) == before


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'"amount"', b'{"amount": 1', b"\xff\xfe", b"x" * 4096]
)
async def test_refund_malformed_or_oversized_body_is_refused_and_writes_nothing(
    client: Client,
    stripe: Stripe,
    engine: AsyncEngine,
    victim: tuple[dict[str, Any], Headers],
    raw: bytes,
) -> None:
    paid, me = victim
    before = await snapshot(engine, stripe)
    r = await client.post(
        f"/v1/bookings/{paid['id']}/refund",
        content=raw,
        headers={**me, "Content-Type": "application/json"},
    )
    assert r.status_code in (400, 413, 422), r.text
    assert set(r.json()) == {"error", "detail"}
    assert await snapshot(engine, stripe) == before


async def test_hostile_but_valid_reason_is_stored_verbatim(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], me)
    reason = f"<script>alert(1)</script> {HOSTILE} ünïcödé\nsecond line"
    r = await client.post(f"/v1/bookings/{paid['id']}/refund", json={"reason": reason}, headers=me)
    assert r.status_code == 201, r.text
    async with engine.connect() as conn:
        stored = await conn.execute(
            text("SELECT reason FROM refunds WHERE booking_id = :b"), {"b": paid["id"]}
        )
        assert stored.scalar_one() == reason


BAD_BOOKING_PATHS = ["0", "-1", str(2**63), str(2**70), "abc", "1.5", "%27%3B%20DROP%20TABLE"]


@pytest.mark.parametrize("session_id", BAD_BOOKING_PATHS)
async def test_booking_bad_session_id_is_refused_and_writes_nothing(
    client: Client, stripe: Stripe, engine: AsyncEngine, tokens: Tokens, session_id: str
) -> None:
    me = mentee(tokens)
    before = await snapshot(engine, stripe)
    r = await client.post(f"/v1/sessions/{session_id}/bookings", headers=me)
    assert r.status_code in (404, 422), r.text
    if r.status_code == 422:
        assert "session_id" in r.json()["detail"], r.text
    assert await snapshot(engine, stripe) == before


BAD_BOOKING_BODIES: list[tuple[str, Any]] = [
    ("seats", {"seats": 2}),
    ("amount", {"amount": 1}),
    ("price", {"price": "100"}),
    ("quantity", {"quantity": -1}),
    ("note", {"note": HOSTILE}),
]


@pytest.mark.parametrize(("field", "body"), BAD_BOOKING_BODIES)
async def test_booking_body_fields_are_refused_naming_them_and_write_nothing(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    field: str,
    body: Any,
) -> None:
    """The booking takes no body: a field sent (a price, a seat count) is not silently dropped."""
    session = await publish(client, coach, clock)
    me = mentee(tokens)
    before = await snapshot(engine, stripe)
    r = await client.post(f"/v1/sessions/{session['id']}/bookings", json=body, headers=me)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"], r.text
    assert await snapshot(engine, stripe) == before


async def test_booking_oversized_body_is_413_and_writes_nothing(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    before = await snapshot(engine, stripe)
    r = await client.post(
        f"/v1/sessions/{session['id']}/bookings",
        json={"note": "x" * 5000},
        headers=mentee(tokens),
    )
    assert r.status_code == 413, r.text
    assert await snapshot(engine, stripe) == before


# ---- retries: the same request never pays or refunds twice -----------------------------------


async def test_a_retried_refund_answers_the_first_and_a_reused_key_with_another_body_is_422(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], me)
    url = f"/v1/bookings/{paid['id']}/refund"
    keyed = {**me, "Idempotency-Key": "refund-a"}
    first = await client.post(url, json={"amount": 1500}, headers=keyed)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers, first.text
    again = await client.post(url, json={"amount": 1500}, headers=keyed)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    before = await snapshot(engine, stripe)
    for body in ({"amount": 1600}, {"amount": 1500, "reason": "changed my mind"}):
        r = await client.post(url, json=body, headers=keyed)
        assert r.status_code == 422 and r.json()["error"] == "IdempotencyKeyReused", r.text
    assert await snapshot(engine, stripe) == before
    # Without a key: the same amount again soon is the same request (the answer may
    # have been lost); a new key is how to refund the same amount twice on purpose.
    plain = await client.post(url, json={"amount": 700}, headers=me)
    replay = await client.post(url, json={"amount": 700}, headers=me)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == plain.json()["id"]
    second = await client.post(url, json={"amount": 700}, headers={**me, "Idempotency-Key": "b"})
    assert second.status_code == 201 and second.json()["id"] != plain.json()["id"]
    assert sorted(r["amount"] for r in stripe.refunds_of(_pi(stripe, paid))) == [700, 700, 1500]


async def test_a_booking_retried_after_stripe_s_answer_was_lost_is_the_same_booking(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    me = mentee(tokens)
    session_id = (await publish(client, coach, clock))["id"]
    stripe.emulator.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/checkout/sessions", "method": "POST", "faults": ["drop_after_commit"]},
    )
    lost = await client.post(f"/v1/sessions/{session_id}/bookings", headers=me)
    assert lost.status_code == 503, lost.text
    retried = await book(client, session_id, me)
    with stripe.emulator.state.lock:
        made = [
            cs["id"]
            for cs in stripe.emulator.state.checkout_sessions.values()
            if cs["metadata"].get("coaching_session_id") == str(session_id)
        ]
    assert made == [retried["checkout_session_id"]]
    row = await booking_row(client, retried["id"], me)
    assert row["status"] == "pending" and row["checkout_url"] == retried["checkout_url"]


async def test_onboarding_holds_its_lock_over_a_stripe_call_without_retries(
    client: Client, stripe: Stripe, tokens: Tokens
) -> None:
    """The profile row is locked across the account creation: a failing Stripe answers
    503 at once (no retry under the lock); the caller's retry makes the one account."""
    import dataclasses

    from core.stripe_gateway import StripeGateway

    coach_headers = tokens.headers("coach", sub="coach-lock-no-retry")
    before = stripe.emulator.control("GET", "stats")["requests"].get("POST /v1/accounts", 0)
    stripe.emulator.control(
        "POST", "faults/next", {"path_prefix": "/v1/accounts", "method": "POST", "faults": ["500"]}
    )
    # The app's everyday gateway retries, as a deployment's does (these tests run with none).
    state = client.app.state  # type: ignore[attr-defined]
    ctx = state["ctx"]
    retrying = StripeGateway("sk_test_emulator", api_base=stripe.emulator.base_url, max_retries=3)
    state["ctx"] = dataclasses.replace(ctx, gateway=retrying)
    try:
        first = await client.post(
            "/v1/coaches/me/onboarding", json={"country": "US"}, headers=coach_headers
        )
    finally:
        state["ctx"] = ctx
        await retrying.aclose()
    assert first.status_code == 503, first.text
    made = stripe.emulator.control("GET", "stats")["requests"].get("POST /v1/accounts", 0)
    assert made - before == 1  # the default gateway would have retried under the lock
    again = await client.post(
        "/v1/coaches/me/onboarding", json={"country": "US"}, headers=coach_headers
    )
    assert again.status_code == 200, again.text
    with stripe.emulator.state.lock:
        mine = [
            a
            for a in stripe.emulator.state.accounts.values()
            if a.get("metadata", {}).get("coach_id") == str(again.json().get("coach_id", ""))
            or a["id"] == again.json()["stripe_account_id"]
        ]
    assert len(mine) == 1
