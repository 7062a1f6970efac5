"""coach_money_totals (migration 0007) always equals the sums over the rows it totals,
whatever sequence of earnings, refunds, payouts and reversals ran, and the balance
read model built on it says what the old per-request sums said."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import session_factory
from payouts.views import coach_balance
from tests.payouts import totals_support as ts

amounts = st.integers(min_value=0, max_value=50_000)
small = st.integers(min_value=1, max_value=20_000)
picks = st.integers(min_value=0, max_value=50)
ops = st.one_of(
    st.tuples(st.just("earn"), picks, st.sampled_from(["usd", "eur"]), amounts, picks),
    st.tuples(st.just("earn_many"), st.lists(amounts, min_size=2, max_size=6)),
    st.tuples(st.just("refund"), picks, small),
    st.tuples(st.just("dispute_won"), picks, small),
    st.tuples(st.just("release"), picks),
    st.tuples(
        st.just("payout"),
        picks,
        st.sampled_from(["usd", "eur"]),
        st.integers(min_value=1, max_value=90_000),
        st.sampled_from(["paid", "paid", "failed", "open"]),
    ),
    st.tuples(st.just("reverse"), picks, small),
)


async def apply(db: AsyncSession, world: ts.World, op: tuple[Any, ...]) -> None:
    kind = op[0]
    coach = world.coaches[op[1] % len(world.coaches)] if isinstance(op[1], int) else 0
    if kind == "earn":
        await ts.earn(db, coach, op[2], op[3], op[4])
    elif kind == "earn_many":
        await ts.earn_many(db, world, op[1])
    elif kind == "refund":
        await ts.refund_before_release(db, world, op[1], op[2])
    elif kind == "dispute_won":
        await ts.dispute_won(db, world, op[1], op[2])
    elif kind == "release":
        await ts.release(db, world, op[1])
    elif kind == "payout":
        await ts.payout(db, coach, op[2], op[3], op[4])
    else:
        await ts.reverse(db, world, op[1], op[2])


async def check(db: Any, world: ts.World) -> None:
    sums, totals = await ts.sums_and_totals(db, world.coaches)
    assert totals == sums
    for coach in world.coaches:
        shown = {b.currency: b for b in await coach_balance(db, coach)}
        assert set(shown) == {cur for c, cur in sums if c == coach}
        for cur, b in shown.items():
            assert (b.paid_out, b.lifetime_earnings) == sums[(coach, cur)]
            assert (b.next_release_at, b.next_release_amount) == await ts.next_release(
                db, coach, cur
            )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seq=st.lists(ops, min_size=1, max_size=25), rollback_at=st.integers(0, 30))
async def test_totals_equal_the_sums_after_any_sequence(
    db: AsyncSession, seq: list[tuple[Any, ...]], rollback_at: int
) -> None:
    world = ts.World(ts.new_coaches(3))  # fresh coaches: examples share the session
    for i, op in enumerate(seq):
        if i == rollback_at:
            # Work rolled back (a failed request) leaves the totals as they were.
            before = await ts.sums_and_totals(db, world.coaches)
            savepoint = await db.begin_nested()
            await apply(db, world, op)
            await savepoint.rollback()
            assert await ts.sums_and_totals(db, world.coaches) == before
        else:
            await apply(db, world, op)
        await db.flush()
    await check(db, world)


@settings(
    max_examples=8,
    deadline=None,
    # Fresh coaches per example: the engine's earlier examples do not matter.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seq=st.lists(st.tuples(ops, st.booleans()), min_size=1, max_size=12))
async def test_totals_hold_across_committed_and_aborted_transactions(
    clean_engine: AsyncEngine, seq: list[tuple[tuple[Any, ...], bool]]
) -> None:
    factory = session_factory(clean_engine)
    world = ts.World(ts.new_coaches(2))
    for op, commit in seq:
        async with factory() as db:
            await apply(db, world, op)
            await (db.commit() if commit else db.rollback())
    async with factory() as db:
        await check(db, world)


async def test_a_coach_with_nothing_has_no_totals_and_zero_deltas_still_mark_the_currency(
    db: AsyncSession,
) -> None:
    [coach] = ts.new_coaches(1)
    assert await coach_balance(db, coach) == []
    await ts.earn(db, coach, "jpy", 0, 1)  # an earning of 0: listed, as the sums listed it
    [bal] = await coach_balance(db, coach)
    assert (bal.currency, bal.lifetime_earnings, bal.next_release_amount) == ("jpy", 0, 0)
    assert bal.next_release_at is not None


async def test_status_only_updates_call_no_trigger_function(db: AsyncSession) -> None:
    """The release and payout jobs' status updates change no total: the WHEN clause
    keeps them from calling the function at all (pg_stat_user_functions counts calls)."""
    [coach] = ts.new_coaches(1)
    await ts.earn(db, coach, "usd", 5000, 1)
    await db.execute(text("SET LOCAL track_functions = 'pl'"))
    fn = "coach_money_totals_earnings_row"

    async def calls() -> int:
        n = await db.execute(
            text("SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = :f"), {"f": fn}
        )
        return int(n.scalar_one_or_none() or 0)

    await db.execute(
        text("UPDATE earnings SET status = 'available', payout_id = 7 WHERE coach_id = :c"),
        {"c": coach},
    )
    assert await calls() == 0
    await db.execute(
        text("UPDATE earnings SET reduced_before_release = 10 WHERE coach_id = :c"), {"c": coach}
    )
    assert await calls() == 1
    [bal] = await coach_balance(db, coach)
    assert bal.lifetime_earnings == 4990


async def test_truncate_zeroes_what_it_summed(clean_engine: AsyncEngine) -> None:
    factory = session_factory(clean_engine)
    [coach] = ts.new_coaches(1)
    async with factory() as db:
        await ts.earn(db, coach, "usd", 7000, 1)
        await ts.payout(db, coach, "usd", 3000, "paid")
        await db.commit()
    async with factory() as db:
        await db.execute(text("TRUNCATE earnings"))
        await db.commit()
        [bal] = await coach_balance(db, coach)
        assert (bal.paid_out, bal.lifetime_earnings) == (3000, 0)
        await db.execute(text("TRUNCATE payouts CASCADE"))
        await db.commit()
        [bal] = await coach_balance(db, coach)
        assert (bal.paid_out, bal.lifetime_earnings) == (0, 0)
