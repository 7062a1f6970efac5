"""Forged refund and dispute events, validly signed, change no balance and no booking;
Stripe's own, delivered twice, book exactly once. End to end through the app's
webhook endpoint, with the emulator as Stripe."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from core.stripe_gateway import StripeGateway
from tests.api.bookings_support import Client, Headers, Stripe, booking_row, mentee, publish
from tests.api.conftest import Tokens
from tests.webhooks.support import (
    Wire,
    keys_like,
    money_state,
    owed,
    paid_booking,
    stripe_object,
    trial_balance,
)

REFUND_TYPES = ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"]


@pytest.fixture(scope="module")
def wire(stripe: Stripe, engine: AsyncEngine) -> Wire:
    return Wire(stripe, engine)


async def two_paid(
    client: Client, stripe: Stripe, coach: Headers, tokens: Tokens, clock: FrozenClock
) -> tuple[dict[str, Any], Headers, dict[str, Any], Headers]:
    session = (await publish(client, coach, clock))["id"]
    me, them = mentee(tokens), mentee(tokens)
    ours = await paid_booking(client, stripe, session, me)
    theirs = await paid_booking(client, stripe, session, them)
    return ours, me, theirs, them


def payment(stripe: Stripe, booking: dict[str, Any]) -> tuple[str, str]:
    """(payment intent, charge) of a paid booking, at Stripe."""
    pi = stripe.checkout(booking["checkout_session_id"])["payment_intent"]
    return pi, stripe_object(stripe, "payment_intents", pi)["latest_charge"]


async def coach_id_of(engine: AsyncEngine, booking: dict[str, Any]) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT coach_id FROM bookings WHERE id = :b"), {"b": booking["id"]}
        )
        return int(found.scalar_one())


@pytest.mark.parametrize("type_", REFUND_TYPES)
async def test_forged_refunds_book_nothing_the_real_refund_books_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    gateway: StripeGateway,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    type_: str,
) -> None:
    ours, me, theirs, them = await two_paid(client, stripe, coach, tokens, clock)
    pi, charge = payment(stripe, ours)
    # Their booking has a real, booked refund: its id is what a forger reuses.
    r = await client.post(
        f"/v1/bookings/{theirs['id']}/refund", json={"amount": 1000}, headers=them
    )
    assert r.status_code == 201, r.text
    await stripe.flush()
    their_refund = stripe_object(stripe, "refunds", r.json()["stripe_refund_id"])
    status = "failed" if type_ == "refund.failed" else "succeeded"
    before = await money_state(engine)
    for body in [
        # A refund Stripe never made, of our whole payment.
        {**their_refund, "id": "re_neverMadeAtStripe", "payment_intent": pi, "charge": charge,
         "amount": 10000, "status": status},
        # Their refund, claimed to be ours and a hundred times larger (or failed).
        {**their_refund, "payment_intent": pi, "charge": charge, "amount": 99_999_999,
         "status": status},
        {"object": "refund", "id": 12},
    ]:  # fmt: skip
        await wire.send(wire.forge(type_, body))
        assert await money_state(engine) == before, body

    coach_id = await coach_id_of(engine, ours)
    owed_before = await owed(engine, coach_id)
    mark = wire.mark()
    made = await gateway.create_refund(
        payment_intent=pi, amount=2500, metadata={}, idempotency_key=f"dash:{type_}:{pi}"
    )
    await wire.send_twice(wire.since(mark, "refund.created"))
    await wire.send_twice(wire.since(mark, "charge.refunded"))
    row = await booking_row(client, ours["id"], me)
    assert (row["status"], row["amount_refunded"]) == ("partially_refunded", 2500)
    assert await keys_like(engine, f"refund:{made.id}") == [f"refund:{made.id}"]
    assert (await owed(engine, coach_id))["pending"] == owed_before["pending"] - 2000
    assert (await booking_row(client, theirs["id"], them))["amount_refunded"] == 1000
    assert await trial_balance(engine) == 0


async def test_a_real_refund_that_failed_is_reversed_once_a_forged_failure_reverses_nothing(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    ours, me, _, _ = await two_paid(client, stripe, coach, tokens, clock)
    r = await client.post(f"/v1/bookings/{ours['id']}/refund", json={"amount": 3000}, headers=me)
    assert r.status_code == 201, r.text
    await stripe.flush()
    refund = stripe_object(stripe, "refunds", r.json()["stripe_refund_id"])
    before = await money_state(engine)
    failed = {**refund, "status": "failed", "failure_reason": "lost_or_stolen_card"}
    for type_ in ("refund.failed", "refund.updated", "charge.refund.updated"):
        await wire.send(wire.forge(type_, failed))  # Stripe says succeeded
        assert await money_state(engine) == before, type_

    mark = wire.mark()
    stripe.emulator.control("POST", f"refunds/{refund['id']}/fail", {})
    await wire.send_twice(wire.since(mark))
    row = await booking_row(client, ours["id"], me)
    assert (row["status"], row["amount_refunded"]) == ("paid", 0)
    assert await keys_like(engine, f"refund_failed:{refund['id']}") == [
        f"refund_failed:{refund['id']}"
    ]
    assert await trial_balance(engine) == 0


async def test_forged_charge_refunded_books_nothing_stripes_list_books_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    gateway: StripeGateway,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    ours, me, theirs, _ = await two_paid(client, stripe, coach, tokens, clock)
    pi, charge = payment(stripe, ours)
    body = {
        **stripe_object(stripe, "charges", charge),
        "amount_refunded": 10000,
        "refunded": True,
        "refunds": {
            "object": "list",
            "has_more": False,
            "data": [
                {"id": "re_neverMadeAtStripe", "object": "refund", "amount": 10000,
                 "currency": "usd", "charge": charge, "payment_intent": pi, "status": "succeeded"},
            ],
        },
    }  # fmt: skip
    _, their_charge = payment(stripe, theirs)
    before = await money_state(engine)
    for forged in [
        body,
        {**body, "id": "ch_neverMadeAtStripe"},
        # Their charge (nothing refunded at Stripe), claiming our payment.
        {**body, "id": their_charge},
    ]:
        await wire.send(wire.forge("charge.refunded", forged))
        assert await money_state(engine) == before, body

    mark = wire.mark()
    made = await gateway.create_refund(
        payment_intent=pi, amount=4000, metadata={}, idempotency_key=f"dash:charge:{pi}"
    )
    await wire.send_twice(wire.since(mark, "charge.refunded"))  # refund.created never comes
    row = await booking_row(client, ours["id"], me)
    assert (row["status"], row["amount_refunded"]) == ("partially_refunded", 4000)
    assert await keys_like(engine, f"refund:{made.id}") == [f"refund:{made.id}"]
    assert await trial_balance(engine) == 0


DISPUTE_TYPES = [
    "charge.dispute.created",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.closed",
]


@pytest.mark.parametrize("type_", DISPUTE_TYPES)
async def test_forged_disputes_book_nothing_the_real_dispute_books_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    type_: str,
) -> None:
    ours, me, theirs, them = await two_paid(client, stripe, coach, tokens, clock)
    pi, charge = payment(stripe, ours)
    _, their_charge = payment(stripe, theirs)
    # Their payment has a real, open dispute (booked): its id is what a forger reuses.
    mark = wire.mark()
    theirs_du = stripe.emulator.control("POST", f"charges/{their_charge}/dispute", {})
    await wire.send_all(wire.since(mark))
    before = await money_state(engine)
    for body in [
        {**theirs_du, "id": "du_neverMadeAtStripe", "charge": charge, "payment_intent": pi},
        # Their dispute, claimed to be of our payment, larger, and already lost.
        {**theirs_du, "charge": charge, "payment_intent": pi, "amount": 10**8, "status": "lost"},
        {"object": "dispute"},
    ]:
        await wire.send(wire.forge(type_, body))
        assert await money_state(engine) == before, body

    coach_id = await coach_id_of(engine, ours)
    owed_before = await owed(engine, coach_id)
    mark = wire.mark()
    du = stripe.emulator.control("POST", f"charges/{charge}/dispute", {})
    stripe.emulator.control("POST", f"disputes/{du['id']}/close", {"outcome": "lost"})
    await wire.send_twice(wire.since(mark))
    assert await keys_like(engine, f"dispute:{du['id']}:%") == [
        f"dispute:{du['id']}:lost",
        f"dispute:{du['id']}:opened",
    ]
    assert (await owed(engine, coach_id))["pending"] == owed_before["pending"] - 8000
    assert await keys_like(engine, f"dispute:{theirs_du['id']}:%") == [
        f"dispute:{theirs_du['id']}:opened"
    ]
    assert (await booking_row(client, theirs["id"], them))["status"] == "paid"
    assert (await booking_row(client, ours["id"], me))["status"] == "paid"
    assert await trial_balance(engine) == 0
