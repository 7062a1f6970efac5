"""The finance summary equals sums over the ledger, checked by hand (see seed.py)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from ledger.report_summary import ledger_payouts, summary, totals
from tests.finance.seed import day, seed


async def test_summary_totals_match_hand_checked_figures(db: AsyncSession) -> None:
    await seed(db)
    rows = await summary(db, start=day(1), end=day(20))
    by = {r.currency: r for r in rows}
    usd = by["usd"]
    assert usd.payments == 3
    assert usd.gross_volume == 18000
    assert usd.platform_fees == 2600
    assert usd.processing_fees == 612
    assert usd.dispute_losses == 1500
    assert usd.net_platform_revenue == 488
    assert usd.refunds == 2000
    assert usd.disputes == 4500
    assert usd.payouts_made == 8000
    assert usd.payouts_pending == 0
    assert (usd.coach_pending, usd.coach_available, usd.coach_balances_outstanding) == (
        2400, 0, 2400,
    )  # fmt: skip
    jpy = by["jpy"]
    assert (jpy.gross_volume, jpy.platform_fees, jpy.processing_fees) == (5000, 1000, 180)
    assert jpy.net_platform_revenue == 820
    assert jpy.coach_balances_outstanding == 4000


async def test_summary_equals_independent_sums_over_entries(db: AsyncSession) -> None:
    """The same figures from a plain SUM over ledger_entries, kind by kind."""
    await seed(db)
    sums = dict(
        (
            await db.execute(
                text(
                    "SELECT a.kind, SUM(e.amount) FROM ledger_entries e JOIN ledger_accounts a "
                    "ON a.id = e.account_id JOIN ledger_transactions t ON t.id = e.transaction_id "
                    "WHERE e.currency = 'usd' AND t.occurred_at >= :s AND t.occurred_at < :e "
                    "GROUP BY a.kind"
                ),
                {"s": day(1), "e": day(20)},
            )
        ).all()
    )
    (usd,) = await summary(db, start=day(1), end=day(20), currency="usd")
    assert usd.platform_fees == -sums["fee_revenue"]
    assert usd.processing_fees == sums["processing_fees"]
    owed = -(sums["pending"] + sums["available"] + sums["in_transit"])
    assert usd.coach_balances_outstanding == owed
    cash_out = usd.refunds + usd.disputes + usd.payouts_made + usd.processing_fees
    assert usd.gross_volume - cash_out == sums["stripe_balance"] == 2888


async def test_grouped_by_day_adds_up_to_totals(db: AsyncSession) -> None:
    await seed(db)
    rows = await summary(db, start=day(1), end=day(20), currency="usd", group="day")
    assert [r.period_start for r in rows] == [date(2031, 3, d) for d in (3, 4, 5, 6, 7, 10, 11)]
    day5 = rows[2]
    assert (day5.refunds, day5.platform_fees, day5.coach_pending) == (2000, -400, 10400)
    (total,) = totals(rows)
    (flat,) = await summary(db, start=day(1), end=day(20), currency="usd")
    assert total == flat


async def test_grouped_by_week_and_month(db: AsyncSession) -> None:
    await seed(db)
    weeks = await summary(db, start=day(1), end=day(20), currency="usd", group="week")
    # 2031-03-03 is a Monday: two ISO weeks hold the data.
    assert [r.period_start for r in weeks] == [date(2031, 3, 3), date(2031, 3, 10)]
    assert [r.gross_volume for r in weeks] == [18000, 0]
    assert [r.payouts_made for r in weeks] == [0, 8000]
    months = await summary(db, start=day(1), end=day(20), group="month")
    assert {(r.currency, r.period_start) for r in months} == {
        ("usd", date(2031, 3, 1)), ("jpy", date(2031, 3, 1)),
    }  # fmt: skip


async def test_opening_balances_carry_into_a_later_period(db: AsyncSession) -> None:
    await seed(db)
    (usd,) = await summary(db, start=day(8), end=day(20), currency="usd")
    assert usd.gross_volume == 0
    assert usd.payouts_made == 8000
    assert usd.coach_balances_outstanding == 2400  # owed from earlier periods
    (quiet,) = await summary(db, start=day(15), end=day(20), currency="usd")
    assert (quiet.gross_volume, quiet.coach_pending) == (0, 2400)


@pytest.mark.parametrize("group", ["year", "", "day; DROP TABLE x", "DAY"])
async def test_bad_group(db: AsyncSession, group: str) -> None:
    with pytest.raises(InvalidInput) as err:
        await summary(db, group=group)
    assert err.value.field == "group"


async def test_ledger_payouts(db: AsyncSession) -> None:
    from ledger.models import Earning

    await seed(db)
    db.add(Earning(coach_id=1, booking_id=1, currency="usd", gross=10000, platform_fee=2000,
                   amount=8000, available_at=day(10), status="paid", payout_id=1,
                   created_at=day(10)))  # fmt: skip
    await db.flush()
    (p,) = await ledger_payouts(db, coach_id=1)
    assert (p.payout_id, p.amount, p.state, p.transfer, p.currency) == (
        1,
        8000,
        "paid",
        "tr_1",
        "usd",
    )
    assert len(p.earning_ids) == 1
    assert await ledger_payouts(db, coach_id=2) == []
