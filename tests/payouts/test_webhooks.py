"""transfer.reversed, payout.paid, payout.failed: Stripe's word booked once, the message's never.

Every handler re-reads its object from the emulator; the events handed to it
are Stripe's own (delivered twice) or forged bodies that are validly shaped
and, at the endpoint, validly signed (tests/api/test_webhook_forgery.py
sends them through the real endpoint).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

import core.users  # noqa: F401  (the users table, which coach_profiles refers to)
from connect.models import CoachProfile
from core.clock import FrozenClock
from core.inbox import HandlerContext
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from core.stripe_types import StripeEvent
from emulator.server import EmulatorServer
from payouts.models import Payout
from payouts.views import coach_balance, list_bank_payouts, list_payouts
from payouts.webhooks import on_connect_payout, on_transfer_reversed
from tests.payouts.emu import emulator_account, emulator_gateway, fund
from tests.payouts.helpers import T0, make_coach, owed, refund_after_payout, trial_balance_is_zero

_n = itertools.count(1)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=5) as s:
        fund(s)
        yield s


@pytest.fixture(scope="module")
async def gateway(server: EmulatorServer) -> AsyncIterator[StripeGateway]:
    gw = emulator_gateway(server)
    yield gw
    await gw.aclose()


@pytest.fixture
def ctx(gateway: StripeGateway) -> HandlerContext:
    return HandlerContext(gateway=gateway, clock=FrozenClock(T0), settings=Settings())


def events_since(server: EmulatorServer, mark: int, type_: str) -> list[StripeEvent]:
    with server.state.lock:
        raw = list(server.state.events.values())[mark:]
        return [StripeEvent.from_dict(e) for e in raw if e["type"] == type_]


def forged(
    type_: str, obj: dict[str, Any], *, account: str | None = None, created: int = 1
) -> StripeEvent:
    raw = {
        "id": f"evt_forged_{next(_n)}",
        "object": "event",
        "type": type_,
        "created": created,
        "data": {"object": obj},
        "account": account,
    }
    return StripeEvent.from_dict(raw)


async def paid_payout(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, amount: int = 8000
) -> Payout:
    """A coach paid ``amount`` by a real transfer at the emulator."""
    account = await emulator_account(gateway, server)
    coach = await make_coach(db, account=account)
    transfer = await gateway.create_transfer(
        amount=amount,
        currency="usd",
        destination=account,
        metadata={"coach_id": str(coach)},
        idempotency_key=f"test-transfer:{account}",
    )
    p = Payout(
        coach_id=coach,
        currency="usd",
        amount=amount,
        status="paid",
        destination=account,
        stripe_transfer_id=transfer.id,
        created_at=T0,
        updated_at=T0,
        settled_at=T0,
    )
    db.add(p)
    await db.flush()
    return p


async def reverse(
    gateway: StripeGateway, server: EmulatorServer, payout: Payout, *amounts: int
) -> list[StripeEvent]:
    """Reverse ``amounts`` of the payout's transfer at Stripe; its transfer.reversed events."""
    mark = len(server.state.events)
    for amount in amounts:
        await gateway.create_transfer_reversal(
            str(payout.stripe_transfer_id),
            amount=amount,
            metadata={},
            idempotency_key=f"test-reversal:{payout.stripe_transfer_id}:{next(_n)}",
        )
    return events_since(server, mark, "transfer.reversed")


async def test_transfer_reversal_nets_the_debt_left_by_a_refund_after_payout(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    payout = await paid_payout(db, gateway, server)
    coach = payout.coach_id
    await refund_after_payout(db, coach, 3000)
    assert (await owed(db, coach))["available"] == -3000
    [event] = await reverse(gateway, server, payout, 3000)
    for _ in range(2):  # delivered twice: booked once
        await on_transfer_reversed(db, event, ctx)
    assert (await owed(db, coach))["available"] == 0  # the coach owes nothing more
    assert await trial_balance_is_zero(db)
    [view] = await list_payouts(db, coach)
    assert view.reversed_amount == 3000
    [bal] = await coach_balance(db, coach)
    assert bal.paid_out == 5000


async def test_forged_reversal_body_books_only_what_stripe_reversed(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    """The attack: a 30,000 reversal claimed of a 4,000 transfer Stripe reversed 1,000 of."""
    payout = await paid_payout(db, gateway, server, amount=4000)
    [genuine] = await reverse(gateway, server, payout, 1000)
    body = {
        **genuine.data_object,
        "amount_reversed": 30_000,
        "reversals": {
            "object": "list",
            "has_more": False,
            "data": [
                {"id": "trr_forged1", "amount": 30_000, "currency": "usd", "transfer": "x"},
                {"id": genuine.data_object["reversals"]["data"][0]["id"], "amount": 29_000},
            ],
        },
    }
    await on_transfer_reversed(db, forged("transfer.reversed", body), ctx)
    await on_transfer_reversed(db, genuine, ctx)
    assert (await owed(db, payout.coach_id))["available"] == 1000
    await db.refresh(payout)
    assert payout.reversed_amount == 1000
    keys = (
        await db.execute(
            text("SELECT idempotency_key FROM ledger_transactions WHERE payout_id = :p"),
            {"p": payout.id},
        )
    ).scalars()
    assert list(keys) == [f"transfer_reversal:{genuine.data_object['reversals']['data'][0]['id']}"]
    assert await trial_balance_is_zero(db)


async def test_more_reversals_than_the_transfer_embeds_are_paged_from_stripe(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    payout = await paid_payout(db, gateway, server, amount=2000)
    events = await reverse(gateway, server, payout, *([100] * 12))
    last = events[-1].data_object["reversals"]
    assert len(last["data"]) == 10 and last["has_more"]  # Stripe shows the 10 newest
    await on_transfer_reversed(db, events[-1], ctx)
    for event in events:  # every earlier one, late: nothing more
        await on_transfer_reversed(db, event, ctx)
    assert (await owed(db, payout.coach_id))["available"] == 1200
    await db.refresh(payout)
    assert payout.reversed_amount == 1200


@pytest.mark.parametrize(
    "change", [{"amount": 9000}, {"currency": "eur"}, {"destination": "acct_someone_else"}]
)
async def test_transfer_that_is_not_the_payouts_books_nothing(
    db: AsyncSession,
    gateway: StripeGateway,
    server: EmulatorServer,
    ctx: HandlerContext,
    change: dict[str, Any],
) -> None:
    """Our row and Stripe's transfer disagree (a row pointed at another transfer): a person
    must look; no reversal is booked against the wrong payout."""
    payout = await paid_payout(db, gateway, server, amount=4000)
    [event] = await reverse(gateway, server, payout, 4000)
    for field, value in change.items():
        setattr(payout, field, value)
    await db.flush()
    await on_transfer_reversed(db, event, ctx)
    assert (await owed(db, payout.coach_id))["available"] == 0
    await db.refresh(payout)
    assert payout.reversed_amount == 0


async def test_transfer_stripe_never_made_or_not_ours_books_nothing(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    payout = await paid_payout(db, gateway, server)
    payout.stripe_transfer_id = "tr_neverMadeAtStripe"  # a row naming a transfer Stripe lacks
    await db.flush()
    body = {"id": "tr_neverMadeAtStripe", "amount": 8000, "amount_reversed": 8000}
    await on_transfer_reversed(db, forged("transfer.reversed", body), ctx)  # 404: done, no raise
    await on_transfer_reversed(db, forged("transfer.reversed", {"id": "tr_nope"}), ctx)
    await on_transfer_reversed(db, forged("transfer.reversed", {"id": 5}), ctx)
    await on_transfer_reversed(db, forged("transfer.reversed", {"id": "../v1/balance"}), ctx)
    assert (await owed(db, payout.coach_id))["available"] == 0
    await db.refresh(payout)
    assert payout.reversed_amount == 0


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    real=st.lists(st.integers(1, 1500), min_size=0, max_size=3),
    claimed=st.lists(st.integers(1, 10**9), min_size=1, max_size=4),
    total=st.integers(0, 10**9),
)
async def test_forged_reversal_amounts_never_raise_the_balance_beyond_what_stripe_reversed(
    db: AsyncSession,
    gateway: StripeGateway,
    server: EmulatorServer,
    ctx: HandlerContext,
    real: list[int],
    claimed: list[int],
    total: int,
) -> None:
    payout = await paid_payout(db, gateway, server, amount=5000)
    genuine = await reverse(gateway, server, payout, *real)
    ids = [r["id"] for e in genuine for r in e.data_object["reversals"]["data"]]
    listed = [
        {"id": (ids[i % len(ids)] if ids and i % 2 else f"trr_fake{i}"), "amount": amount}
        for i, amount in enumerate(claimed)
    ]
    body = {
        "id": payout.stripe_transfer_id,
        "amount": 5000,
        "currency": "usd",
        "amount_reversed": total,
        "reversals": {"object": "list", "data": listed, "has_more": False},
    }
    for event in [forged("transfer.reversed", body), *genuine, *genuine]:
        await on_transfer_reversed(db, event, ctx)
    assert (await owed(db, payout.coach_id))["available"] == sum(real)
    await db.refresh(payout)
    assert payout.reversed_amount == sum(real)
    assert await trial_balance_is_zero(db)


# ---- the coach's own payouts to their bank --------------------------------------------------


async def bank_payout(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, outcome: str
) -> tuple[int, str, StripeEvent]:
    """(coach, account, Stripe's payout.<outcome> event) for a real payout at the emulator."""
    payout = await paid_payout(db, gateway, server, amount=5000)
    mark = len(server.state.events)
    server.control(
        "POST",
        f"accounts/{payout.destination}/payouts",
        {"amount": 2000, "currency": "usd", "outcome": outcome, "failure_code": "account_closed"},
    )
    [event] = events_since(server, mark, f"payout.{outcome}")
    return payout.coach_id, payout.destination, event


async def profile(db: AsyncSession, coach: int) -> CoachProfile:
    stmt = select(CoachProfile).where(CoachProfile.user_id == coach)
    return (await db.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def pauses(db: AsyncSession, coach: int) -> int:
    found = await db.execute(
        text("SELECT count(*) FROM audit_log WHERE action = 'payouts.pause' AND entity_id = :c"),
        {"c": str(coach)},
    )
    return int(found.scalar_one())


async def test_failed_bank_payout_is_shown_and_pauses_payouts_once(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    coach, account, event = await bank_payout(db, gateway, server, "failed")
    for _ in range(2):
        await on_connect_payout(db, event, ctx)
    [bank] = await list_bank_payouts(db, coach)
    assert (bank.status, bank.failure_code, bank.amount) == ("failed", "account_closed", 2000)
    assert "closed" in (bank.failure_message or "")
    p = await profile(db, coach)
    assert p.payouts_paused and "account_closed" in (p.payouts_paused_reason or "")
    assert await pauses(db, coach) == 1
    # The same payout told again as paid, with an older time: Stripe says failed.
    replay = forged("payout.paid", {**event.data_object, "status": "paid"}, account=account)
    await on_connect_payout(db, replay, ctx)
    [bank] = await list_bank_payouts(db, coach)
    assert bank.status == "failed"
    # A later, newer payout that is paid does not resume payouts: an admin decides.
    mark = len(server.state.events)
    server.control("POST", f"accounts/{account}/payouts", {"amount": 500, "currency": "usd"})
    [paid] = events_since(server, mark, "payout.paid")
    await on_connect_payout(db, paid, ctx)
    assert len(await list_bank_payouts(db, coach)) == 2
    assert (await profile(db, coach)).payouts_paused
    assert await pauses(db, coach) == 1


async def test_an_admins_pause_reason_is_kept(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    coach, _, event = await bank_payout(db, gateway, server, "failed")
    p = await profile(db, coach)
    p.payouts_paused, p.payouts_paused_reason = True, "fraud review"
    await db.flush()
    await on_connect_payout(db, event, ctx)
    assert (await profile(db, coach)).payouts_paused_reason == "fraud review"


async def test_forged_bank_payout_events_record_nothing_and_pause_nothing(
    db: AsyncSession, gateway: StripeGateway, server: EmulatorServer, ctx: HandlerContext
) -> None:
    coach, account, paid = await bank_payout(db, gateway, server, "paid")
    other_coach, other_account, other = await bank_payout(db, gateway, server, "paid")
    failed_body = {
        **paid.data_object,
        "status": "failed",
        "failure_code": "account_closed",
        "amount": 999_999,
    }
    for event in [
        # Stripe says paid: the body's failure and amount are not believed.
        forged("payout.failed", failed_body, account=account, created=10**10),
        # A payout id Stripe never made.
        forged("payout.failed", {**failed_body, "id": "po_neverMade"}, account=account),
        # Another coach's payout, claimed for this coach's account: 404 on this account.
        forged("payout.failed", {**other.data_object, "status": "failed"}, account=account),
        # No account, or an account that is no coach's.
        forged("payout.failed", failed_body),
        forged("payout.failed", failed_body, account="acct_notOurs"),
        forged("payout.failed", {"id": None}, account=account),
    ]:
        await on_connect_payout(db, event, ctx)
    [bank] = await list_bank_payouts(db, coach)
    assert (bank.status, bank.amount, bank.failure_code) == ("paid", 2000, None)
    assert await list_bank_payouts(db, other_coach) == []
    for c in (coach, other_coach):
        assert not (await profile(db, c)).payouts_paused
        assert await pauses(db, c) == 0
    assert other_account != account
