"""Hold release: due earnings move from pending to available, once each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.settings import Settings
from ledger.models import Earning, LedgerTransaction
from payouts.jobs import RELEASE_JOB, job_lock, run_release_job
from payouts.release import release_due
from tests.payouts.helpers import T0, add_earning, make_coach, owed, trial_balance_is_zero


async def test_hold_boundary_71h59_not_released_72h_released(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    coach = await make_coach(tx)
    earning = await add_earning(tx, coach, gross=10_000, paid_at=T0)
    await tx.commit()

    clock.set(T0 + timedelta(hours=71, minutes=59))
    result = await run_release_job(factory, clock=clock, settings=settings)
    assert result.released == 0
    assert await owed(tx, coach) == {"pending": 8000, "available": 0, "in_transit": 0}

    clock.set(T0 + timedelta(hours=72))
    result = await run_release_job(factory, clock=clock, settings=settings)
    assert result.released == 1
    await tx.refresh(earning)
    assert earning.status == "available"
    assert earning.released_at == T0 + timedelta(hours=72)
    assert await owed(tx, coach) == {"pending": 0, "available": 8000, "in_transit": 0}

    again = await run_release_job(factory, clock=clock, settings=settings)
    assert again.released == 0
    n = await tx.scalar(
        select(func.count()).where(
            LedgerTransaction.type == "hold_release", LedgerTransaction.coach_id == coach
        )
    )
    assert n == 1
    released = await tx.get(LedgerTransaction, earning.release_transaction_id)
    assert released is not None and released.type == "hold_release"
    assert await trial_balance_is_zero(tx)


async def test_release_moves_only_what_was_not_refunded_and_cancels_empty(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    coach = await make_coach(tx)
    part = await add_earning(tx, coach, gross=10_000, reduced=3000)
    full = await add_earning(tx, coach, gross=5000, reduced=4000)
    await tx.commit()
    clock.set(T0 + timedelta(hours=80))
    result = await run_release_job(factory, clock=clock, settings=settings)
    assert (result.released, result.cancelled) == (1, 1)
    await tx.refresh(part)
    await tx.refresh(full)
    assert (part.status, full.status) == ("available", "cancelled")
    assert full.release_transaction_id is None
    assert await owed(tx, coach) == {"pending": 0, "available": 5000, "in_transit": 0}


async def test_many_due_earnings_in_batches_and_other_currencies(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    coaches = [await make_coach(tx) for _ in range(7)]
    for i in range(230):  # several batches of 50
        await add_earning(
            tx, coaches[i % 7], gross=1000 + i, currency="eur" if i % 5 == 0 else "usd"
        )
    await add_earning(tx, coaches[0], paid_at=T0 + timedelta(days=1))  # not yet due
    await tx.commit()
    clock.set(T0 + timedelta(hours=72))
    result = await run_release_job(factory, clock=clock, settings=settings, concurrency=3)
    assert result.released == 230 and result.errors == 0
    left = await tx.scalar(select(func.count()).where(Earning.status == "pending"))
    assert left == 1
    assert await trial_balance_is_zero(tx)


async def test_job_is_skipped_while_another_process_holds_its_lock(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    coach = await make_coach(tx)
    await add_earning(tx, coach)
    await tx.commit()
    clock.set(T0 + timedelta(hours=72))
    async with job_lock(factory, RELEASE_JOB) as got:
        assert got
        skipped = await run_release_job(factory, clock=clock, settings=settings)
        assert not skipped.ran and skipped.released == 0
    assert (await run_release_job(factory, clock=clock, settings=settings)).released == 1


async def test_one_transaction_per_coach_and_currency_and_a_crashed_run_posts_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    coaches = [await make_coach(tx) for _ in range(4)]
    earnings = []
    for i in range(40):  # 10 per coach, usd and eur, due at different instants
        at = T0 + timedelta(minutes=i)
        currency = "eur" if i % 2 else "usd"
        earnings.append(
            await add_earning(tx, coaches[i % 4], gross=1000 + i, currency=currency, paid_at=at)
        )
    await tx.commit()
    clock.set(T0 + timedelta(hours=73))

    # A run that dies before its commit: the postings go with the earnings' marks.
    async with factory() as db:
        crashed = await release_due(db, now=clock.now(), limit=1000)
        assert crashed.released == 40
        await db.rollback()
    assert await tx.scalar(select(func.count()).where(Earning.status == "pending")) == 40

    big = settings.model_copy(update={"job_batch_size": 1000})
    # One worker: concurrent workers share the rows by SKIP LOCKED, so a coach's
    # earnings may fall into two workers' batches (two postings, still each once).
    result = await run_release_job(factory, clock=clock, settings=big, concurrency=1)
    assert result.released == 40 and result.errors == 0
    again = await run_release_job(factory, clock=clock, settings=big, concurrency=1)
    assert again.released == 0
    n = await tx.scalar(select(func.count()).where(LedgerTransaction.type == "hold_release"))
    # Coach i gets earnings i, i+4, ...: coaches 0 and 2 usd only, 1 and 3 eur only.
    assert n == 4
    tx.expire_all()
    for e in earnings:
        await tx.refresh(e)
        assert e.status == "available" and e.release_transaction_id is not None
    for c in coaches:
        mine = [e for e in earnings if e.coach_id == c]
        assert len({e.release_transaction_id for e in mine}) == 1
        assert (await owed(tx, c, currency=mine[0].currency))["available"] == sum(
            e.amount for e in mine
        )
    assert await trial_balance_is_zero(tx)


async def test_a_batch_boundary_inside_a_coach_still_releases_everything_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    coach = await make_coach(tx)
    for i in range(120):  # batches of 50: the coach spans three
        await add_earning(tx, coach, gross=1000 + i, paid_at=T0 + timedelta(seconds=i))
    await tx.commit()
    clock.set(T0 + timedelta(hours=73))
    result = await run_release_job(factory, clock=clock, settings=settings, concurrency=1)
    assert result.released == 120
    n = await tx.scalar(select(func.count()).where(LedgerTransaction.type == "hold_release"))
    assert n == 3
    assert (await owed(tx, coach))["pending"] == 0
    assert await trial_balance_is_zero(tx)
