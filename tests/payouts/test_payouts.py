"""Payouts with a fake Stripe: amounts, schedule, minimum, netting, refusals, retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.settings import Settings
from core.stripe_errors import StripeBalanceInsufficient, StripeOutcomeUnknown, StripeRefused
from ledger.accounts import AccountRef, Kind, balance, get_account_id
from ledger.models import Earning
from payouts.admin import retry_payout
from payouts.errors import PayoutNotRetryable
from payouts.jobs import run_cycle
from payouts.models import Payout, PayoutAttempt
from tests.payouts.helpers import (
    T0,
    FakeStripe,
    add_earning,
    make_coach,
    owed,
    refund_after_payout,
    trial_balance_is_zero,
)

DUE = T0 + timedelta(hours=72)


async def cycle(factory: Any, stripe: FakeStripe, clock: FrozenClock, settings: Settings) -> Any:
    return await run_cycle(factory, gateway=stripe, clock=clock, settings=settings)  # type: ignore[arg-type]


async def payouts_of(db: AsyncSession, coach: int) -> list[Payout]:
    db.expire_all()
    rows = await db.execute(select(Payout).where(Payout.coach_id == coach).order_by(Payout.id))
    return list(rows.scalars())


async def test_pays_whole_available_balance_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx, account="acct_paid1")
    e1 = await add_earning(tx, coach, gross=10_000)
    e2 = await add_earning(tx, coach, gross=2_500)
    later = await add_earning(tx, coach, gross=999, paid_at=T0 + timedelta(days=1))
    await tx.commit()
    cash = await get_account_id(tx, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
    cash_before = await balance(tx, cash)
    clock.set(DUE)
    result = await cycle(factory, stripe, clock, settings)
    assert result.release.released == 2 and result.payouts.paid == 1

    [payout] = await payouts_of(tx, coach)
    assert (payout.status, payout.amount, payout.destination) == ("paid", 10_000, "acct_paid1")
    [tr] = stripe.for_payout(payout.id)
    assert payout.stripe_transfer_id == tr.id and tr.amount == 10_000
    assert tr.metadata == {"payout_id": str(payout.id), "coach_id": str(coach)}
    assert tr.transfer_group == f"payout:{payout.id}"
    assert stripe.calls == [f"create:payout:{payout.id}"]
    for e in (e1, e2, later):
        await tx.refresh(e)
    assert (e1.status, e1.payout_id, e2.payout_id) == ("paid", payout.id, payout.id)
    assert (later.status, later.payout_id) == ("pending", None)
    assert await owed(tx, coach) == {"pending": later.amount, "available": 0, "in_transit": 0}
    assert await balance(tx, cash) == cash_before - 10_000
    assert await trial_balance_is_zero(tx)

    again = await cycle(factory, stripe, clock, settings)
    assert again.payouts.created == 0 and len(stripe.transfers) == 1


async def test_minimum_payout_waits_until_reached(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx, minimum={"usd": 10_000})
    await add_earning(tx, coach, gross=10_000)  # 8000 to the coach
    await tx.commit()
    clock.set(DUE)
    result = await cycle(factory, stripe, clock, settings)
    assert result.payouts.created == 0 and not stripe.transfers
    await add_earning(tx, coach, gross=2_500, paid_at=T0 + timedelta(hours=1))  # +2000
    await tx.commit()
    clock.advance(timedelta(hours=1))
    await cycle(factory, stripe, clock, settings)
    [payout] = await payouts_of(tx, coach)
    assert payout.amount == 10_000 and payout.status == "paid"


@pytest.mark.parametrize(
    ("schedule", "not_yet", "due"),
    [
        ("instant", None, timedelta(hours=1)),
        ("daily", timedelta(hours=11), timedelta(hours=12)),  # next midnight
        ("weekly", timedelta(days=3, hours=11), timedelta(days=3, hours=12)),  # next Monday
        ("monthly", timedelta(days=26, hours=11), timedelta(days=26, hours=12)),  # April 1st
    ],
)
async def test_each_schedule_pays_again_from_its_next_period(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
    schedule: str,
    not_yet: timedelta | None,
    due: timedelta,
) -> None:
    # First payout on Thursday 2026-03-05 12:00 (T0 + 72 h).
    coach = await make_coach(tx, schedule=schedule)
    await add_earning(tx, coach)
    await add_earning(tx, coach, paid_at=T0 + timedelta(minutes=30))
    await tx.commit()
    clock.set(DUE)
    await cycle(factory, stripe, clock, settings)
    assert len(await payouts_of(tx, coach)) == 1
    clock.set(DUE + timedelta(minutes=30))  # the second earning is released now
    await cycle(factory, stripe, clock, settings)
    if not_yet is not None:
        assert len(await payouts_of(tx, coach)) == 1
        clock.set(DUE + not_yet)
        await cycle(factory, stripe, clock, settings)
        assert len(await payouts_of(tx, coach)) == 1
        clock.set(DUE + due)
        await cycle(factory, stripe, clock, settings)
    assert [p.amount for p in await payouts_of(tx, coach)] == [8000, 8000]


async def test_paused_or_not_enabled_coach_is_not_paid(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    paused = await make_coach(tx, paused=True)
    disabled = await make_coach(tx, payouts_enabled=False)
    await add_earning(tx, paused)
    await add_earning(tx, disabled)
    await tx.commit()
    clock.set(DUE)
    result = await cycle(factory, stripe, clock, settings)
    assert result.release.released == 2 and result.payouts.created == 0 and not stripe.transfers
    assert (await owed(tx, paused))["available"] == 8000


async def test_refund_after_payout_is_netted_by_the_next_payout(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx)
    await add_earning(tx, coach)
    await tx.commit()
    clock.set(DUE)
    await cycle(factory, stripe, clock, settings)
    await refund_after_payout(tx, coach, 3000)  # the mentee got 30.00 of the coach's share back
    await tx.commit()
    assert (await owed(tx, coach))["available"] == -3000
    clock.advance(timedelta(hours=1))
    result = await cycle(factory, stripe, clock, settings)
    assert result.payouts.created == 0  # nothing to pay while negative
    await add_earning(tx, coach, paid_at=T0 + timedelta(hours=2))
    await tx.commit()
    clock.advance(timedelta(hours=2))
    await cycle(factory, stripe, clock, settings)
    _first, second = await payouts_of(tx, coach)
    assert second.amount == 5000 and second.status == "paid"  # 80.00 - 30.00
    assert (await owed(tx, coach))["available"] == 0
    assert await trial_balance_is_zero(tx)


async def test_definite_refusal_fails_returns_money_and_says_why(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx, account="acct_cannot")
    e = await add_earning(tx, coach)
    await tx.commit()
    stripe.refuse_destinations["acct_cannot"] = StripeRefused(
        "insufficient_capabilities_for_transfer",
        "Your destination account needs to have the transfers capability enabled.",
        400,
    )
    clock.set(DUE)
    result = await cycle(factory, stripe, clock, settings)
    assert result.payouts.outcomes["failed"] == 1
    [payout] = await payouts_of(tx, coach)
    assert (
        payout.status == "failed"
        and payout.failure_code == "insufficient_capabilities_for_transfer"
    )
    assert "transfers capability" in (payout.failure_reason or "")
    assert await owed(tx, coach) == {"pending": 0, "available": 8000, "in_transit": 0}
    await tx.refresh(e)
    assert (e.status, e.payout_id) == ("available", None)
    assert await trial_balance_is_zero(tx)

    # The admin retries once the coach fixed the account: a new payout, a new key.
    del stripe.refuse_destinations["acct_cannot"]
    retried = await retry_payout(tx, payout_id=payout.id, now=clock.now())
    await tx.commit()
    with pytest.raises(PayoutNotRetryable):
        await retry_payout(tx, payout_id=payout.id, now=clock.now())
    await tx.rollback()
    await cycle(factory, stripe, clock, settings)
    _, second = await payouts_of(tx, coach)
    assert second.id == retried.id and second.retry_of == payout.id and second.status == "paid"
    assert len(stripe.transfers) == 1


async def test_balance_insufficient_waits_for_funds_then_pays_with_a_new_key(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx)
    await add_earning(tx, coach)
    await tx.commit()
    stripe.faults.append(StripeBalanceInsufficient("balance_insufficient", "funds short", 400))
    clock.set(DUE)
    await cycle(factory, stripe, clock, settings)
    [payout] = await payouts_of(tx, coach)
    assert payout.status == "waiting_funds" and payout.next_attempt_at > clock.now()
    assert (await owed(tx, coach))["in_transit"] == 8000
    await cycle(factory, stripe, clock, settings)  # not due yet
    assert len(stripe.calls) == 1
    clock.set(payout.next_attempt_at)
    await cycle(factory, stripe, clock, settings)
    [payout] = await payouts_of(tx, coach)
    assert payout.status == "paid"
    assert stripe.calls == [f"create:payout:{payout.id}", f"create:payout:{payout.id}:1"]


async def test_unknown_outcome_stays_pending_and_next_run_settles_without_second_transfer(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx)
    await add_earning(tx, coach)
    await tx.commit()
    stripe.faults.append(StripeOutcomeUnknown("timeout after commit"))
    clock.set(DUE)
    result = await cycle(factory, stripe, clock, settings)
    assert result.payouts.outcomes["unknown"] == 1
    [payout] = await payouts_of(tx, coach)
    assert payout.status == "pending" and "timeout" in (payout.last_error or "")
    assert len(stripe.transfers) == 1  # it was made, we just did not hear
    await cycle(factory, stripe, clock, settings)
    [payout] = await payouts_of(tx, coach)
    assert payout.status == "paid" and len(stripe.transfers) == 1
    outcomes = (
        (
            await tx.execute(
                select(PayoutAttempt.outcome)
                .where(PayoutAttempt.payout_id == payout.id)
                .order_by(PayoutAttempt.id)
            )
        )
        .scalars()
        .all()
    )
    assert list(outcomes) == ["unknown", "paid"]


async def test_after_the_idempotency_window_the_transfer_is_found_by_metadata(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx)
    await add_earning(tx, coach)
    await tx.commit()
    stripe.faults.append(StripeOutcomeUnknown("drop after commit"))
    clock.set(DUE)
    await cycle(factory, stripe, clock, settings)
    stripe.forget_keys = True  # 25 hours later Stripe no longer knows the key
    clock.advance(timedelta(hours=25))
    await cycle(factory, stripe, clock, settings)
    [payout] = await payouts_of(tx, coach)
    assert payout.status == "paid" and len(stripe.transfers) == 1
    assert stripe.calls[-1] == f"find:{payout.id}"


async def test_after_the_window_with_no_transfer_found_one_is_created(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coach = await make_coach(tx)
    await add_earning(tx, coach)
    await tx.commit()
    stripe.faults.append(StripeOutcomeUnknown("connection refused"))
    clock.set(DUE)
    await cycle(factory, stripe, clock, settings)
    clock.advance(timedelta(hours=25))
    await cycle(factory, stripe, clock, settings)
    [payout] = await payouts_of(tx, coach)
    assert payout.status == "paid" and len(stripe.transfers) == 1
    assert stripe.calls[-2:] == [f"find:{payout.id}", f"create:payout:{payout.id}"]


async def test_one_open_payout_per_coach_and_currency_is_enforced_by_the_database(
    tx: AsyncSession,
) -> None:
    coach = await make_coach(tx)
    for _ in range(2):
        tx.add(
            Payout(
                coach_id=coach,
                currency="usd",
                amount=1,
                destination="acct_x",
                created_at=T0,
                updated_at=T0,
            )
        )
    with pytest.raises(Exception, match="uq_payouts_open"):
        await tx.flush()
    await tx.rollback()
    assert (await tx.execute(text("SELECT count(*) FROM payouts"))).scalar() == 0
    assert (await tx.execute(select(Earning))).first() is None
