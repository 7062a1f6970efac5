"""checkout.session.completed costs one Stripe call: the PaymentIntent the body names,
read with its charge and balance transaction. A body whose PaymentIntent Stripe does
not vouch for (another booking's, an unpaid one) takes the long way and books nothing.
End to end: the app's webhook endpoint, its handlers, the emulator as Stripe."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from tests.api.bookings_support import (
    Client,
    Headers,
    Stripe,
    book,
    booking_row,
    mentee,
    publish,
)
from tests.api.conftest import Tokens
from tests.webhooks.support import Wire, keys_like, money_state, paid_booking, pay, trial_balance


@pytest.fixture(scope="module")
def wire(stripe: Stripe, engine: AsyncEngine) -> Wire:
    return Wire(stripe, engine)


def stripe_calls(stripe: Stripe) -> int:
    """Requests the emulator answered on Stripe's API (its control API left out)."""
    stats = stripe.emulator.control("GET", "stats")
    return sum(int(n) for route, n in stats["requests"].items() if " /v1/" in route)


async def test_a_completed_checkout_costs_exactly_one_stripe_call(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    coach: Headers,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    session = (await publish(client, coach, clock, capacity=3))["id"]
    me = mentee(tokens)
    pending = await book(client, session, me)
    mark = wire.mark()
    pay(stripe, pending, "succeeded")
    [completed] = wire.since(mark, "checkout.session.completed")
    before = stripe_calls(stripe)
    await wire.send(completed)
    assert stripe_calls(stripe) - before == 1
    assert (await booking_row(client, pending["id"], me))["status"] == "paid"
    pi = completed["data"]["object"]["payment_intent"]
    assert await keys_like(engine, f"payment:{pi}") == [f"payment:{pi}"]
    # Delivered again under a new id: still one call, nothing booked twice.
    before = stripe_calls(stripe)
    await wire.send({**completed, "id": f"{completed['id']}x2"})
    assert stripe_calls(stripe) - before == 1
    assert await keys_like(engine, f"payment:{pi}") == [f"payment:{pi}"]
    assert await trial_balance(engine) == 0


async def test_a_body_naming_another_bookings_or_an_unpaid_intent_books_nothing(
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
    ours = await book(client, session, me)
    other = await paid_booking(client, stripe, session, mentee(tokens))
    declined = await book(client, session, them)
    mark = wire.mark()
    pay(stripe, declined, "failed")
    wire.since(mark)  # Stripe's own events of the decline: not delivered here
    other_pi = stripe.checkout(other["checkout_session_id"])["payment_intent"]
    unpaid_pi = stripe.checkout(declined["checkout_session_id"])["payment_intent"]
    assert other_pi and unpaid_pi
    ours_cs = stripe.checkout(ours["checkout_session_id"])
    declined_cs = stripe.checkout(declined["checkout_session_id"])
    paid = {"status": "complete", "payment_status": "paid"}
    bodies: list[dict[str, Any]] = [
        # Our open session, claimed paid by another booking's (real, paid) intent.
        {**ours_cs, **paid, "payment_intent": other_pi},
        # Our open session, claimed paid by an unpaid intent.
        {**ours_cs, **paid, "payment_intent": unpaid_pi},
        # The declined booking's own session and intent, claimed paid.
        {**declined_cs, **paid, "payment_intent": unpaid_pi},
        # An intent Stripe never made.
        {**ours_cs, **paid, "payment_intent": "pi_neverMadeAtStripe"},
        # An expanded intent object, carrying a forged status.
        {**ours_cs, **paid, "payment_intent": {"id": other_pi, "status": "succeeded"}},
    ]
    before = await money_state(engine)
    for body in bodies:
        await wire.send(wire.forge("checkout.session.completed", body))
        assert await money_state(engine) == before, body
    assert (await booking_row(client, ours["id"], me))["status"] == "pending"
    assert (await booking_row(client, declined["id"], them))["status"] != "paid"
    assert await trial_balance(engine) == 0
