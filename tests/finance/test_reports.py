"""The Transaction view and the trial balance over the hand-checked data set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput, UnknownCurrency
from ledger.reports import (
    TransactionFilter,
    decode_cursor,
    encode_cursor,
    iter_transactions,
    list_transactions,
    trial_balance,
)
from tests.finance.seed import day, seed

PERIOD = TransactionFilter(start=day(1), end=day(20))


async def test_transaction_view_derives_figures_from_legs(db: AsyncSession) -> None:
    ids = await seed(db)
    rows = {r.id: r for r in await list_transactions(db, PERIOD, limit=500)}
    a = rows[ids["A"]]
    assert (a.type, a.status, a.currency) == ("session_payment", "paid", "usd")
    assert (a.amount, a.platform_fee, a.coach_payout, a.processing_fee) == (10000, 2000, 8000, 0)
    assert (a.payment_intent, a.stripe_object, a.session_id, a.payer_id, a.coach_id) == (
        "pi_A", "pi_A", 10, 101, 1,
    )  # fmt: skip
    assert rows[ids["B"]].status == "partially_refunded"
    assert rows[ids["C"]].status == "dispute_lost"
    refund = rows[ids["B-refund"]]
    assert (refund.amount, refund.platform_fee, refund.coach_payout) == (-2000, -400, -1600)
    fee = rows[ids["A-fee"]]
    assert (fee.amount, fee.processing_fee, fee.platform_fee) == (-320, 320, 0)
    release = rows[ids["A-release"]]
    assert (release.amount, release.coach_payout) == (8000, 8000)
    payout = rows[ids["payout"]]
    assert (payout.status, payout.amount, payout.payout_id) == ("paid", 8000, 1)
    settled = rows[ids["payout-settled"]]
    assert (settled.amount, settled.transfer) == (-8000, "tr_1")
    d = rows[ids["D"]]
    assert (d.currency, d.amount, d.platform_fee, d.coach_payout) == ("jpy", 5000, 1000, 4000)


async def test_full_refund_status(db: AsyncSession) -> None:
    from ledger.accounts import AccountRef, Kind, get_account_id
    from ledger.posting import Leg, TxType, post

    ids = await seed(db)
    cash = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
    fees = await get_account_id(db, AccountRef.platform(Kind.FEE_REVENUE, "usd"))
    pend = await get_account_id(db, AccountRef.coach(1, Kind.PENDING, "usd"))
    await post(db, type=TxType.REFUND, idempotency_key="seed:B-refund-2", occurred_at=day(8),
               legs=[Leg(cash, -3000, "usd"), Leg(fees, 600, "usd"), Leg(pend, 2400, "usd")],
               booking_id=2)  # fmt: skip
    rows = {r.id: r for r in await list_transactions(db, PERIOD, limit=500)}
    assert rows[ids["B"]].status == "refunded"


async def test_filters(db: AsyncSession) -> None:
    ids = await seed(db)
    only = TransactionFilter(type="session_payment", start=day(1), end=day(20))
    assert [r.id for r in await list_transactions(db, only)] == [ids[k] for k in "ABCD"]
    jpy = TransactionFilter(currency="jpy", start=day(1), end=day(20))
    assert {r.id for r in await list_transactions(db, jpy)} == {ids["D"], ids["D-fee"]}
    coach2 = TransactionFilter(coach_id=2, start=day(1), end=day(20))
    assert {r.id for r in await list_transactions(db, coach2)} == {ids["D"], ids["D-fee"]}
    window = TransactionFilter(start=day(4), end=day(5))
    assert [r.id for r in await list_transactions(db, window)] == [ids["B"], ids["B-fee"]]


async def test_cursor_pages_cover_everything_once(db: AsyncSession) -> None:
    await seed(db)
    everything = [r.id for r in await list_transactions(db, PERIOD, limit=500)]
    assert len(everything) == 13
    seen: list[int] = []
    after = None
    while True:
        page = await list_transactions(db, PERIOD, after=after, limit=3)
        if not page:
            break
        assert len(page) <= 3
        seen += [r.id for r in page]
        after = decode_cursor(encode_cursor(page[-1].occurred_at, page[-1].id))
    assert seen == everything
    assert [r.id async for r in iter_transactions(db, PERIOD, batch=4)] == everything


@pytest.mark.parametrize("limit", [0, -1, 501, 10**9])
async def test_limit_out_of_range(db: AsyncSession, limit: int) -> None:
    with pytest.raises(InvalidInput) as err:
        await list_transactions(db, PERIOD, limit=limit)
    assert err.value.field == "limit"


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90LWEtY3Vyc29y", encode_cursor(day(1), 1)[:-3]])
def test_bad_cursor(cursor: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_cursor(cursor)
    assert err.value.field == "cursor"


def test_naive_cursor_time_rejected() -> None:
    with pytest.raises(InvalidInput):
        decode_cursor(encode_cursor(datetime(2031, 1, 1), 5))


def test_bad_filters() -> None:
    with pytest.raises(UnknownCurrency):
        TransactionFilter(currency="xxx")
    with pytest.raises(InvalidInput) as err:
        TransactionFilter(start=day(5), end=day(5) - timedelta(seconds=1))
    assert err.value.field == "from"


async def test_hostile_type_is_only_a_value(db: AsyncSession) -> None:
    await seed(db)
    evil = TransactionFilter(type="x' OR '1'='1", start=day(1), end=day(20))
    assert await list_transactions(db, evil) == []


async def test_trial_balance_sums_to_zero_per_currency(db: AsyncSession) -> None:
    await seed(db)
    tb = await trial_balance(db, verify=True)
    assert tb.totals == {"jpy": 0, "usd": 0}
    assert tb.balanced
    by = {(line.owner_type, line.owner_id, line.kind, line.currency): line for line in tb.lines}
    assert by[("platform", 0, "stripe_balance", "usd")].balance == 2888
    assert by[("platform", 0, "fee_revenue", "usd")].balance == -2600
    assert by[("coach", 1, "pending", "usd")].balance == -2400
    assert by[("platform", 0, "stripe_balance", "jpy")].balance == 4820
    assert all(line.entries_sum == line.balance for line in tb.lines)
    usd_only = await trial_balance(db, currency="usd")
    assert {line.currency for line in usd_only.lines} == {"usd"}
    assert all(line.entries_sum is None for line in usd_only.lines)


async def test_empty_period(db: AsyncSession) -> None:
    at = datetime(2040, 1, 1, tzinfo=UTC)
    assert await list_transactions(db, TransactionFilter(start=at, end=at + timedelta(1))) == []
