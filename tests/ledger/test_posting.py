from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidAmount, UnknownCurrency
from ledger.accounts import AccountRef, Kind, balance, balance_at, coach_balances, get_account_id
from ledger.errors import (
    AccountNotFound,
    CurrencyMismatch,
    EmptyTransaction,
    IdempotencyConflict,
    UnbalancedTransaction,
)
from ledger.models import Entry, LedgerTransaction
from ledger.posting import Leg, TxType, post
from tests.ledger.helpers import T0, payment_accounts, post_payment


async def _counts(db: AsyncSession) -> tuple[int, int]:
    tx = (await db.execute(select(func.count()).select_from(LedgerTransaction))).scalar_one()
    en = (await db.execute(select(func.count()).select_from(Entry))).scalar_one()
    return tx, en


async def test_session_payment_split(db: AsyncSession) -> None:
    a = await payment_accounts(db, coach_id=42)
    result = await post_payment(db, a, key="payment:pi_1", gross=10000)
    assert result.created
    assert await balance(db, a.stripe) == 10000
    assert await balance(db, a.fees) == -2000
    assert await balance(db, a.pending) == -8000
    assert (await coach_balances(db, 42))["usd"]["pending"] == 8000


async def test_same_key_same_legs_returns_first(db: AsyncSession) -> None:
    a = await payment_accounts(db, coach_id=1)
    first = await post_payment(db, a, key="payment:pi_2", gross=5000)
    again = await post_payment(db, a, key="payment:pi_2", gross=5000)
    assert again.transaction_id == first.transaction_id
    assert not again.created
    assert await balance(db, a.stripe) == 5000  # posted once


async def test_same_key_other_legs_conflicts(db: AsyncSession) -> None:
    a = await payment_accounts(db, coach_id=1)
    await post_payment(db, a, key="payment:pi_3", gross=5000)
    with pytest.raises(IdempotencyConflict):
        await post_payment(db, a, key="payment:pi_3", gross=5001)


async def test_multi_currency_balances_per_currency(db: AsyncSession) -> None:
    usd = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
    eur = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "eur"))
    usd_c = await get_account_id(db, AccountRef.coach(9, Kind.AVAILABLE, "usd"))
    eur_c = await get_account_id(db, AccountRef.coach(9, Kind.AVAILABLE, "eur"))
    r = await post(
        db,
        type=TxType.ADJUSTMENT,
        idempotency_key="adj:fx:1",
        occurred_at=T0,
        legs=[
            Leg(usd, 100, "usd"),
            Leg(usd_c, -100, "usd"),
            Leg(eur, 90, "eur"),
            Leg(eur_c, -90, "eur"),
        ],
    )
    assert r.created
    with pytest.raises(UnbalancedTransaction):
        await post(
            db,
            type=TxType.ADJUSTMENT,
            idempotency_key="adj:fx:2",
            occurred_at=T0,
            legs=[Leg(usd, 100, "usd"), Leg(eur_c, -100, "eur")],
        )


@pytest.mark.parametrize(
    ("legs", "error"),
    [
        ([], EmptyTransaction),
        ([("s", 100, "usd")], EmptyTransaction),
        ([("s", 100, "usd"), ("p", -99, "usd")], UnbalancedTransaction),
        ([("s", 1.5, "usd"), ("p", -1.5, "usd")], InvalidAmount),
        ([("s", "100", "usd"), ("p", -100, "usd")], InvalidAmount),
        ([("s", 0, "usd"), ("p", 0, "usd")], InvalidAmount),
        ([("s", 100, "xyz"), ("p", -100, "xyz")], UnknownCurrency),
        ([("s", 100, "usd"), (987654321, -100, "usd")], AccountNotFound),
        ([("s", 100, "eur"), ("p", -100, "eur")], CurrencyMismatch),
    ],
)
async def test_bad_postings_write_nothing(
    db: AsyncSession, legs: list[tuple[object, object, str]], error: type[Exception]
) -> None:
    a = await payment_accounts(db, coach_id=5)
    ids = {"s": a.stripe, "p": a.pending}
    before = await _counts(db)
    built = [Leg(ids.get(acct, acct), amt, cur) for acct, amt, cur in legs]  # type: ignore[arg-type]
    with pytest.raises(error):
        async with db.begin_nested():
            await post(
                db, type=TxType.ADJUSTMENT, idempotency_key="bad:1", occurred_at=T0, legs=built
            )
    assert await _counts(db) == before
    assert await balance(db, a.stripe) == 0


async def test_point_in_time_balance(db: AsyncSession) -> None:
    a = await payment_accounts(db, coach_id=77)

    async def now() -> object:
        return (await db.execute(text("SELECT clock_timestamp()"))).scalar_one()

    before = await now()
    await post_payment(db, a, key="pit:1", gross=1000)
    between = await now()
    await asyncio.sleep(0.01)
    await post_payment(db, a, key="pit:2", gross=3000)
    after = await now()
    assert await balance_at(db, a.pending, before) == 0  # type: ignore[arg-type]
    assert await balance_at(db, a.pending, between) == -800  # type: ignore[arg-type]
    assert await balance_at(db, a.pending, after) == -3200  # type: ignore[arg-type]
    # hot account (several slots) too
    assert await balance_at(db, a.stripe, between) == 1000  # type: ignore[arg-type]
    assert await balance_at(db, a.stripe, after + timedelta(days=1)) == 4000  # type: ignore[operator]


async def test_balance_of_unknown_account(db: AsyncSession) -> None:
    with pytest.raises(AccountNotFound):
        await balance(db, 123456789)
