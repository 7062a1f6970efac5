"""Cancelling a coaching session over HTTP: paid bookings refunded, unpaid ones closed.

Same module setup as tests/api/test_bookings_http.py (one app, one emulator,
one clock); every test makes its own coach, mentees and sessions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
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
)
from tests.api.conftest import Tokens
from tests.api.test_bookings_http import (  # module fixtures, shared setup
    client,
    coach,
    emulator,
    engine,
    settings,
    stripe,
    tokens,
)
from tests.api.test_bookings_http import clock as clock

__all__ = ["client", "coach", "emulator", "engine", "settings", "stripe", "tokens"]


async def _session_status(engine: AsyncEngine, session_id: int) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT status FROM coaching_sessions WHERE id = :s"), {"s": session_id}
        )
        return str(found.scalar_one())


async def _refunds(engine: AsyncEngine, stripe: Stripe, booking_id: int) -> list[dict[str, Any]]:
    """Stripe's refunds of the booking's payment."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT payment_intent_id FROM bookings WHERE id = :b"), {"b": booking_id}
        )
        pi = found.scalar_one()
    assert pi is not None
    return stripe.refunds_of(str(pi))


async def _trial_balance(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT COALESCE(sum(amount), 0) FROM ledger_entries"))
        return int(found.scalar_one())


async def _cancel(client: Client, session_id: int, who: Headers, **kw: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/sessions/{session_id}/cancel", headers=who, **kw)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_cancel_refunds_paid_bookings_in_full_and_closes_unpaid_ones(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock, capacity=5)
    a, b, c = mentee(tokens), mentee(tokens), mentee(tokens)
    paid = await paid_booking(client, stripe, session["id"], a)
    part = await paid_booking(client, stripe, session["id"], b)
    r = await client.post(f"/v1/bookings/{part['id']}/refund", json={"amount": 2500}, headers=coach)
    assert r.status_code == 201, r.text
    await stripe.flush()
    pending = await book(client, session["id"], c)

    out = await _cancel(client, session["id"], coach)
    assert out["session"]["status"] == "cancelled"
    assert sorted(out["refunded"]) == sorted([paid["id"], part["id"]])
    assert out["closed"] == [pending["id"]]
    assert out["refunds_waiting"] == [] and out["refunds_refused"] == []

    # At Stripe: one full refund, and the rest of the partly refunded payment.
    assert [x["amount"] for x in await _refunds(engine, stripe, paid["id"])] == [10000]
    assert sorted(x["amount"] for x in await _refunds(engine, stripe, part["id"])) == [
        2500,
        7500,
    ]
    assert stripe.checkout(pending["checkout_session_id"])["status"] == "expired"
    await stripe.flush()  # Stripe's own echoes of those refunds book nothing more
    for booking, who, status in ((paid, a, "refunded"), (part, b, "refunded")):
        row = await booking_row(client, booking["id"], who)
        assert row["status"] == status and row["amount_refunded"] == 10000
    assert (await booking_row(client, pending["id"], c))["status"] == "cancelled"
    assert (await audit(engine, paid["id"]))[-1] == (
        "paid",
        "refunded",
        "system",
        None,
        "refund:auto",
    )
    assert (await audit(engine, pending["id"]))[-1][1:] == (
        "cancelled",
        "system",
        None,
        "session_cancelled",
    )
    assert await _trial_balance(engine) == 0
    # The coach's held share went back with the refunds.
    r = await client.get("/v1/coaches/me/balance", headers=coach)
    usd = {x["currency"]: x for x in r.json()["balances"]}.get("usd")
    assert usd is None or usd["pending"] == 0

    # Cancelling again settles nothing more, and the session takes no new booking.
    before = await snapshot(engine, stripe)
    again = await _cancel(client, session["id"], coach, json={})
    assert again["refunded"] == [] and again["closed"] == []
    assert await snapshot(engine, stripe) == before
    r = await client.post(f"/v1/sessions/{session['id']}/bookings", headers=mentee(tokens))
    assert r.status_code == 409 and r.json()["error"] == "SessionNotBookable"


async def test_others_cannot_cancel_and_bad_requests_write_nothing(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    buyer = mentee(tokens)
    await paid_booking(client, stripe, session["id"], buyer)
    other_coach = await onboard_coach(client, stripe, tokens)
    sid = session["id"]
    before = await snapshot(engine, stripe)
    attempts: list[tuple[Headers | None, str, dict[str, Any], tuple[int, ...]]] = [
        (None, f"/v1/sessions/{sid}/cancel", {}, (401,)),
        (buyer, f"/v1/sessions/{sid}/cancel", {}, (403,)),
        (tokens.headers("finance"), f"/v1/sessions/{sid}/cancel", {}, (403,)),
        (other_coach, f"/v1/sessions/{sid}/cancel", {}, (404,)),
        (coach, "/v1/sessions/987654321/cancel", {}, (404,)),
        (coach, "/v1/sessions/0/cancel", {}, (400, 404, 422)),
        (coach, f"/v1/sessions/{2**63}/cancel", {}, (400, 404, 422)),
        (coach, "/v1/sessions/1%27%3B--/cancel", {}, (400, 404)),
        (coach, f"/v1/sessions/{sid}/cancel", {"json": {"refund": False}}, (422,)),
        (coach, f"/v1/sessions/{sid}/cancel", {"json": ["x"]}, (422,)),
        # No Content-Type: refused before the body is read (api/security.py).
        (coach, f"/v1/sessions/{sid}/cancel", {"content": b"{not json"}, (415,)),
        (coach, f"/v1/sessions/{sid}/cancel", {"json": {"note": "x" * 5000}}, (413,)),
    ]
    for who, url, kw, codes in attempts:
        r = await client.post(url, headers=who or {}, **kw)
        assert r.status_code in codes, (url, kw, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"}, r.text
    assert await snapshot(engine, stripe) == before
    assert await _session_status(engine, sid) == "published"


async def test_after_the_start_only_an_admin_can_cancel(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock, days=1)
    buyer = mentee(tokens)
    paid = await paid_booking(client, stripe, session["id"], buyer)
    with shifted(clock, timedelta(days=1, minutes=30)):
        before = await snapshot(engine, stripe)
        r = await client.post(f"/v1/sessions/{session['id']}/cancel", headers=coach)
        assert r.status_code == 409 and r.json()["error"] == "SessionNotCancellable", r.text
        assert await snapshot(engine, stripe) == before
        out = await _cancel(client, session["id"], tokens.headers("admin"))
    assert out["refunded"] == [paid["id"]]
    assert [x["amount"] for x in await _refunds(engine, stripe, paid["id"])] == [10000]


async def test_stripe_down_leaves_the_refund_owed_and_a_repeat_refunds_once(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    buyer = mentee(tokens)
    paid = await paid_booking(client, stripe, session["id"], buyer)
    # Executed at Stripe, answer lost: our side cannot know the refund exists.
    stripe.emulator.control(
        "POST",
        "faults",
        {"rate_drop_after_commit": 1.0, "paths": ["/v1/refunds"], "methods": ["POST"]},
    )
    try:
        out = await _cancel(client, session["id"], coach)
    finally:
        stripe.emulator.control("POST", "faults", {})
    assert out["session"]["status"] == "cancelled"
    assert out["refunds_waiting"] == [paid["id"]] and out["refunded"] == []
    assert (await booking_row(client, paid["id"], buyer))["status"] == "paid"
    assert len(await _refunds(engine, stripe, paid["id"])) == 1

    # The same idempotency key: Stripe answers the refund it made, booked once.
    out = await _cancel(client, session["id"], coach)
    assert out["refunded"] == [paid["id"]] and out["refunds_waiting"] == []
    assert len(await _refunds(engine, stripe, paid["id"])) == 1
    await stripe.flush()
    assert (await booking_row(client, paid["id"], buyer))["status"] == "refunded"
    assert await _trial_balance(engine) == 0


async def test_a_checkout_paid_after_the_cancel_is_refunded_by_its_webhook(
    client: Client,
    stripe: Stripe,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = await publish(client, coach, clock)
    buyer = mentee(tokens)
    b = await book(client, session["id"], buyer)
    # Paid at Stripe just before the cancel, its webhook not here yet.
    stripe.emulator.control("POST", f"checkout/sessions/{b['checkout_session_id']}/pay", {})
    out = await _cancel(client, session["id"], coach)
    assert out["closed"] == [] and out["refunded"] == []
    await stripe.flush()
    row = await booking_row(client, b["id"], buyer)
    assert row["status"] == "refunded", row
    assert await _trial_balance(engine) == 0
