"""Forged Checkout, PaymentIntent and account events, validly signed, change nothing;
Stripe's own, delivered twice, still book exactly once. End to end: the app's
webhook endpoints, its handlers, the emulator as Stripe."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from tests.api.bookings_support import (
    Client,
    Headers,
    Stripe,
    book,
    booking_row,
    mentee,
    onboard_coach,
    publish,
    user_id,
)
from tests.api.conftest import Tokens
from tests.webhooks.support import (
    Wire,
    keys_like,
    money_state,
    owed,
    paid_booking,
    pay,
    stripe_object,
    trial_balance,
)


@pytest.fixture(scope="module")
def wire(stripe: Stripe, engine: AsyncEngine) -> Wire:
    return Wire(stripe, engine)


def intent_of(stripe: Stripe, booking: dict[str, Any]) -> dict[str, Any]:
    cs = stripe.checkout(booking["checkout_session_id"])
    return stripe_object(stripe, "payment_intents", cs["payment_intent"])


async def transitions(engine: AsyncEngine, booking_id: int, to: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM booking_events WHERE booking_id = :b AND to_status = :t"),
            {"b": booking_id, "t": to},
        )
        return int(found.scalar_one())


@pytest.mark.parametrize(
    "type_", ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
)
async def test_forged_checkout_paid_books_nothing_the_real_payment_books_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    type_: str,
) -> None:
    session = (await publish(client, coach, clock))["id"]
    me = mentee(tokens)
    pending = await book(client, session, me)
    other = await paid_booking(client, stripe, session, mentee(tokens))
    paid_cs = stripe.checkout(other["checkout_session_id"])
    ours = stripe.checkout(pending["checkout_session_id"])
    before = await money_state(engine)
    for body in [
        # Our open session claimed paid, with another booking's payment and a huge amount.
        {**ours, "status": "complete", "payment_status": "paid",
         "payment_intent": paid_cs["payment_intent"], "amount_total": 10**9},
        # A session Stripe never made, naming our booking.
        {**paid_cs, "id": "cs_test_neverMadeAtStripe",
         "metadata": {**paid_cs["metadata"], "booking_id": str(pending["id"])}},
        # Another booking's paid session, claiming our booking.
        {**paid_cs, "metadata": {**ours["metadata"]}, "amount_total": 1},
        {"id": None, "object": "checkout.session"},
    ]:  # fmt: skip
        await wire.send(wire.forge(type_, body))
        assert await money_state(engine) == before, body
    assert (await booking_row(client, pending["id"], me))["status"] == "pending"

    coach_id = await user_id(engine, coach)
    owed_before = await owed(engine, coach_id)
    mark = wire.mark()
    pay(stripe, pending, "succeeded")
    await wire.send_twice(wire.since(mark))
    assert (await booking_row(client, pending["id"], me))["status"] == "paid"
    pi = intent_of(stripe, pending)["id"]
    assert await keys_like(engine, f"payment:{pi}") == [f"payment:{pi}"]
    assert (await owed(engine, coach_id))["pending"] == owed_before["pending"] + 8000
    assert await transitions(engine, pending["id"], "paid") == 1
    assert await trial_balance(engine) == 0


async def test_forged_payment_failed_fails_no_booking_the_real_failure_fails_its_own_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = (await publish(client, coach, clock, capacity=5))["id"]
    me, them = mentee(tokens), mentee(tokens)
    pending = await book(client, session, me)
    paid = await paid_booking(client, stripe, session, mentee(tokens))
    declined = await book(client, session, them)
    paid_pi = intent_of(stripe, paid)
    claim_ours = {"booking_id": str(pending["id"]), "attempt": "1"}
    before = await money_state(engine)
    for body in [
        # A succeeded payment's intent, claimed failed and ours.
        {**paid_pi, "status": "requires_payment_method", "metadata": claim_ours},
        # An intent Stripe never made.
        {**paid_pi, "id": "pi_neverMadeAtStripe", "metadata": claim_ours},
        {"object": "payment_intent"},
    ]:
        await wire.send(wire.forge("payment_intent.payment_failed", body))
        assert await money_state(engine) == before, body

    mark = wire.mark()
    pay(stripe, declined, "failed")
    genuine = wire.since(mark)
    [failed] = [e for e in genuine if e["type"] == "payment_intent.payment_failed"]
    # The declined card's own intent, its body edited to name our booking: Stripe's
    # metadata names theirs, so theirs fails and ours stays pending.
    edited = {**failed["data"]["object"], "metadata": claim_ours}
    await wire.send(wire.forge("payment_intent.payment_failed", edited))
    await wire.send_twice(genuine)
    assert (await booking_row(client, declined["id"], them))["status"] == "failed"
    assert (await booking_row(client, pending["id"], me))["status"] == "pending"
    assert await transitions(engine, declined["id"], "failed") == 1
    assert await transitions(engine, pending["id"], "failed") == 0
    assert await trial_balance(engine) == 0


async def test_forged_async_failure_of_a_payment_still_processing_fails_nothing(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = (await publish(client, coach, clock))["id"]
    me = mentee(tokens)
    booking = await book(client, session, me)
    await stripe.pay(booking["checkout_session_id"], "async_pending")
    processing = stripe.checkout(booking["checkout_session_id"])
    assert processing["payment_status"] == "unpaid"  # what a failure shows too
    before = await money_state(engine)
    for body in [processing, {**processing, "id": "cs_test_neverMadeAtStripe"}]:
        await wire.send(wire.forge("checkout.session.async_payment_failed", body))
        assert await money_state(engine) == before, body
    assert (await booking_row(client, booking["id"], me))["status"] == "pending"

    mark = wire.mark()
    pay(stripe, booking, "async_failed")
    await wire.send_twice(wire.since(mark))
    assert (await booking_row(client, booking["id"], me))["status"] == "failed"
    assert await transitions(engine, booking["id"], "failed") == 1


async def test_forged_expiry_cancels_nothing_the_real_one_cancels_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = (await publish(client, coach, clock))["id"]
    me = mentee(tokens)
    booking = await book(client, session, me)
    paid = await paid_booking(client, stripe, session, mentee(tokens))
    open_cs = stripe.checkout(booking["checkout_session_id"])
    before = await money_state(engine)
    for body in [
        {**open_cs, "status": "expired"},
        {**stripe.checkout(paid["checkout_session_id"]), "status": "expired"},
        {**open_cs, "id": "cs_test_neverMadeAtStripe", "status": "expired"},
    ]:
        await wire.send(wire.forge("checkout.session.expired", body))
        assert await money_state(engine) == before, body

    mark = wire.mark()
    stripe.emulator.control("POST", f"checkout/sessions/{booking['checkout_session_id']}/expire")
    await wire.send_twice(wire.since(mark))
    assert (await booking_row(client, booking["id"], me))["status"] == "cancelled"
    assert await transitions(engine, booking["id"], "cancelled") == 1


async def test_forged_account_updates_change_no_account_the_real_one_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    tokens: Tokens,
    engine: AsyncEngine,
) -> None:
    mine = await onboard_coach(client, stripe, tokens)
    theirs = await onboard_coach(client, stripe, tokens)
    gone = await onboard_coach(client, stripe, tokens)
    me, other = await user_id(engine, mine), await user_id(engine, theirs)
    async with engine.begin() as conn:
        accounts = dict(
            (
                await conn.execute(
                    text(
                        "SELECT coach_id, stripe_account_id FROM connect_accounts "
                        "WHERE coach_id IN (:a, :b)"
                    ),
                    {"a": me, "b": other},
                )
            ).all()
        )
        # A row whose account Stripe no longer knows (another environment's, say).
        await conn.execute(
            text(
                "UPDATE connect_accounts SET stripe_account_id = 'acct_goneFromStripe' "
                "WHERE coach_id = :c"
            ),
            {"c": await user_id(engine, gone)},
        )
    acct = accounts[me]
    restricted = {
        **stripe_object(stripe, "accounts", accounts[other]),
        "charges_enabled": False,
        "payouts_enabled": False,
        "capabilities": {"transfers": "inactive"},
        "requirements": {"disabled_reason": "rejected.fraud", "currently_due": ["x"]},
    }
    before = await money_state(engine)
    for event in [
        wire.forge("account.updated", {**restricted, "id": acct}, account=acct),
        wire.forge("account.updated", restricted, account=acct),  # the other coach's body
        wire.forge("account.updated", {**restricted, "id": "acct_neverMade"}),
        wire.forge("account.updated", {**restricted, "id": "acct_goneFromStripe"}),
    ]:
        await wire.send(event)
        assert await money_state(engine) == before, event

    mark = wire.mark()
    stripe.emulator.control("POST", f"accounts/{acct}/restrict", {})
    await wire.send_twice(wire.since(mark))
    async with engine.connect() as conn:
        status = await conn.execute(
            text("SELECT status FROM connect_accounts WHERE coach_id = :c"), {"c": me}
        )
        changes = await conn.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE action = 'connect_account.status_changed' "
                "AND after ->> 'status' = 'restricted'"
            )
        )
        assert status.scalar_one() == "restricted"
        assert changes.scalar_one() == 1
