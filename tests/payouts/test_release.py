"""Hold release: due earnings move from pending to available, once each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.settings import Settings
from ledger.models import Earning, LedgerTransaction
from payouts.jobs import RELEASE_JOB, job_lock, run_release_job
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
            LedgerTransaction.idempotency_key == f"release:earning:{earning.id}"
        )
    )
    assert n == 1
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
