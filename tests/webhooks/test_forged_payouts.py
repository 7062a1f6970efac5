"""Forged transfer.reversed and payout.* events, validly signed, credit no coach, pay
nothing out and pause nothing; Stripe's own, delivered twice, book exactly once.

The coaches are paid out for real: a booking paid through Checkout, the hold
let run (the job's clock a week ahead), the payout job's transfer at the emulator.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from core.db import session_factory
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from payouts.jobs import run_cycle
from tests.api.bookings_support import (
    Client,
    Headers,
    Stripe,
    mentee,
    onboard_coach,
    publish,
    user_id,
)
from tests.api.conftest import Tokens
from tests.webhooks.support import Wire, money_state, owed, paid_booking, trial_balance

WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def wire(stripe: Stripe, engine: AsyncEngine) -> Wire:
    return Wire(stripe, engine)


class PaidCoach:
    def __init__(self, headers: Headers, coach_id: int, account: str) -> None:
        self.headers, self.id, self.account = headers, coach_id, account


async def pay_out(
    engine: AsyncEngine,
    gateway: StripeGateway,
    clock: FrozenClock,
    settings: Settings,
    ahead: timedelta = WEEK,
) -> None:
    """A payout run, its clock past every hold of this module (coaches are paid daily)."""
    job_clock = FrozenClock(clock.now() + ahead)
    factory = session_factory(engine)
    await run_cycle(factory, gateway=gateway, clock=job_clock, settings=settings, concurrency=1)


async def paid_out_coach(
    client: Client,
    stripe: Stripe,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    gateway: StripeGateway,
    settings: Settings,
) -> PaidCoach:
    headers = await onboard_coach(client, stripe, tokens)
    session = (await publish(client, headers, clock))["id"]
    await paid_booking(client, stripe, session, mentee(tokens))
    await pay_out(engine, gateway, clock, settings)
    coach_id = await user_id(engine, headers)
    async with engine.connect() as conn:
        account = await conn.execute(
            text("SELECT stripe_account_id FROM connect_accounts WHERE coach_id = :c"),
            {"c": coach_id},
        )
        coach = PaidCoach(headers, coach_id, str(account.scalar_one()))
    assert await owed(engine, coach.id) == {"pending": 0, "available": 0, "in_transit": 0}
    return coach


async def payouts_of(engine: AsyncEngine, coach_id: int) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT amount, status, reversed_amount, stripe_transfer_id FROM payouts "
                "WHERE coach_id = :c ORDER BY id"
            ),
            {"c": coach_id},
        )
        return [tuple(r) for r in rows]


def transfers_to(stripe: Stripe, account: str) -> list[dict[str, Any]]:
    with stripe.emulator.state.lock:
        found = stripe.emulator.state.transfers.values()
        return [dict(t) for t in found if t["destination"] == account]


async def test_forged_reversals_credit_no_one_and_the_next_run_pays_only_what_stripe_reversed(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    gateway: StripeGateway,
    settings: Settings,
) -> None:
    a = await paid_out_coach(client, stripe, tokens, clock, engine, gateway, settings)
    b = await paid_out_coach(client, stripe, tokens, clock, engine, gateway, settings)
    [(amount, status, _, transfer_id)] = await payouts_of(engine, a.id)
    assert (amount, status) == (8000, "paid")
    [(_, _, _, their_transfer)] = await payouts_of(engine, b.id)
    [transfer] = transfers_to(stripe, a.account)
    attack = {
        **transfer,
        "amount_reversed": 30_000,
        "reversed": True,
        "reversals": {
            "object": "list",
            "has_more": False,
            "data": [{"id": "trr_forged", "object": "transfer_reversal", "amount": 30_000,
                      "currency": "usd", "transfer": transfer_id}],
        },
    }  # fmt: skip
    before = await money_state(engine)
    for body in [
        attack,  # the outside attack: 30,000 claimed reversed of an 8,000 transfer
        {**attack, "id": "tr_neverMadeAtStripe"},
        {**attack, "id": their_transfer},  # another coach's transfer, nothing reversed
        {"object": "transfer", "id": ["tr_x"]},
    ]:
        await wire.send(wire.forge("transfer.reversed", body))
        assert await money_state(engine) == before, body
    await pay_out(engine, gateway, clock, settings)  # the next run pays nothing
    assert len(transfers_to(stripe, a.account)) == 1
    assert await money_state(engine) == before

    mark = wire.mark()
    await gateway.create_transfer_reversal(
        transfer_id, amount=1000, metadata={}, idempotency_key=f"dashboard:{transfer_id}"
    )
    await wire.send_twice(wire.since(mark, "transfer.reversed"))
    await wire.send(wire.forge("transfer.reversed", attack))  # again, after the real one
    assert await owed(engine, a.id) == {"pending": 0, "available": 1000, "in_transit": 0}
    assert (await payouts_of(engine, a.id))[0][2] == 1000
    assert await owed(engine, b.id) == {"pending": 0, "available": 0, "in_transit": 0}
    assert await trial_balance(engine) == 0
    await pay_out(engine, gateway, clock, settings, ahead=2 * WEEK)  # another day
    assert [t["amount"] for t in transfers_to(stripe, a.account)] == [8000, 1000]


async def bank_payout(stripe: Stripe, wire: Wire, account: str, outcome: str) -> list[Any]:
    """A payout at Stripe from the account to its bank; its payout.<outcome> event."""
    mark = wire.mark()
    body = {"amount": 3000, "currency": "usd", "outcome": outcome, "force": True}
    stripe.emulator.control("POST", f"accounts/{account}/payouts", body)
    return wire.since(mark, f"payout.{outcome}")


async def test_forged_bank_payouts_change_nothing_a_real_failure_pauses_payouts_once(
    client: Client,
    stripe: Stripe,
    wire: Wire,
    tokens: Tokens,
    clock: FrozenClock,
    engine: AsyncEngine,
    gateway: StripeGateway,
    settings: Settings,
) -> None:
    a = await paid_out_coach(client, stripe, tokens, clock, engine, gateway, settings)
    b = await paid_out_coach(client, stripe, tokens, clock, engine, gateway, settings)
    [their_paid] = await bank_payout(stripe, wire, b.account, "paid")
    lie = {**their_paid["data"]["object"], "status": "failed", "failure_code": "account_closed"}
    before = await money_state(engine)
    for event in [
        wire.forge("payout.failed", {**lie, "id": "po_neverMadeAtStripe"}, account=a.account),
        wire.forge("payout.failed", lie, account=a.account),  # b's payout, claimed as a's
        wire.forge("payout.failed", lie, account="acct_notOneOfOurs"),
        wire.forge("payout.failed", lie),  # no connected account at all
        wire.forge("payout.paid", {"id": "po_x/../../balance"}, account=a.account),
    ]:
        await wire.send(event)
        assert await money_state(engine) == before, event
    # b's real payout (paid), its body edited to say failed: recorded as Stripe has it.
    await wire.send(wire.forge("payout.failed", lie, account=b.account))
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT coach_id, status, amount FROM connect_payouts ORDER BY id")
        )
        assert [tuple(r) for r in rows] == [(b.id, "paid", 3000)]
    assert (await money_state(engine))["pauses"] == before["pauses"]

    [failed] = await bank_payout(stripe, wire, a.account, "failed")
    await wire.send_twice([failed])
    async with engine.connect() as conn:
        paused, reason = (
            await conn.execute(
                text(
                    "SELECT payouts_paused, payouts_paused_reason FROM coach_profiles "
                    "WHERE user_id = :c"
                ),
                {"c": a.id},
            )
        ).one()
        pauses = await conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'payouts.pause'")
        )
        assert pauses.scalar_one() == 1
    assert paused and "account_closed" in reason
    # Money earned meanwhile is not sent to an account that cannot be paid...
    session = (await publish(client, a.headers, clock))["id"]
    await paid_booking(client, stripe, session, mentee(tokens))
    await pay_out(engine, gateway, clock, settings, ahead=2 * WEEK)
    assert len(transfers_to(stripe, a.account)) == 1
    assert (await owed(engine, a.id))["available"] == 8000
    # ...and a later payout that arrives does not resume payouts: an admin decides.
    await wire.send_twice(await bank_payout(stripe, wire, a.account, "paid"))
    async with engine.connect() as conn:
        still = await conn.execute(
            text("SELECT payouts_paused FROM coach_profiles WHERE user_id = :c"), {"c": a.id}
        )
        assert still.scalar_one() is True
