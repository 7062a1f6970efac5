"""Payments to one coach stay concurrent: a writer never waits on a coach_money_totals row.

A single totals row per coach would make every payment of a busy coach wait for the
previous one's commit (and a refund that updates its earning before posting, against
a payment that posts before inserting its earning, could deadlock). The triggers take
any row no other transaction holds, or add one, so no lock wait is possible: with
``lock_timeout`` set, a wait would fail the statement.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import session_factory
from payouts.views import coach_balance
from tests.payouts import totals_support as ts
from tests.payouts.helpers import add_earning


async def _no_waiting(db: AsyncSession) -> None:
    await db.execute(text("SET LOCAL lock_timeout = '300ms'"))


async def test_open_transactions_on_one_coach_do_not_wait_for_each_other(
    clean_engine: AsyncEngine,
) -> None:
    factory = session_factory(clean_engine)
    [coach] = ts.new_coaches(1)
    async with factory() as db:  # a committed totals row every writer could want
        await ts.earn(db, coach, "usd", 1000, 1)
        await db.commit()
    sessions = [factory() for _ in range(4)]
    try:
        # Each holds its totals row until it commits: an earning, a refund of the
        # first earning, a paid payout and a reversal, all open at once.
        a, b, c, d = sessions
        for s in sessions:
            await _no_waiting(s)
        await ts.earn(a, coach, "usd", 2000, 2)
        await ts.earn(b, coach, "usd", 3000, 3)
        await ts.payout(c, coach, "usd", 500, "paid")
        await ts.refund_before_release(d, ts.World([coach]), 0, 100)
        # A fifth, while all four are open, also goes straight through.
        async with factory() as e:
            await _no_waiting(e)
            await ts.earn(e, coach, "usd", 4000, 4)
            await e.commit()
        for s in sessions:
            await s.commit()
    finally:
        for s in sessions:
            await s.close()
    async with factory() as db:
        sums, totals = await ts.sums_and_totals(db, [coach])
        assert totals == sums == {(coach, "usd"): (500, 1000 + 2000 + 3000 + 4000 - 100)}
        rows = (
            await db.execute(
                text("SELECT count(*) FROM coach_money_totals WHERE coach_id = :c"), {"c": coach}
            )
        ).scalar_one()
        # One row per writer that found every existing row held, no more.
        assert 2 <= rows <= 5


async def test_many_concurrent_payments_to_one_coach(clean_engine: AsyncEngine) -> None:
    """8 workers post real payments (ledger split + earning) to one coach at once."""
    factory = session_factory(clean_engine)
    [coach] = ts.new_coaches(1)
    async with factory() as db:  # the accounts exist before the race
        await add_earning(db, coach, gross=1000)
        await db.commit()

    async def worker(n: int) -> None:
        for i in range(6):
            async with factory() as db:
                await add_earning(db, coach, gross=1000 + 100 * n + i)
                await ts.earn(db, coach, "usd", 10, i)
                await db.commit()

    await asyncio.gather(*(worker(n) for n in range(8)))
    async with factory() as db:
        sums, totals = await ts.sums_and_totals(db, [coach])
        assert totals == sums
        [bal] = await coach_balance(db, coach)
        assert bal.lifetime_earnings == sums[(coach, "usd")][1]
        assert bal.pending == bal.lifetime_earnings - 48 * 10  # ledger and totals agree
        rows = (
            await db.execute(
                text("SELECT count(*) FROM coach_money_totals WHERE coach_id = :c"), {"c": coach}
            )
        ).scalar_one()
        assert rows <= 9  # at most one per concurrent writer, plus the first
