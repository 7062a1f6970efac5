"""The payout job's workers side by side, each on a connection it holds for its life:
a crash in one worker mid-payout (others in flight), Stripe faults, then reruns;
and two payout runs at once, sharing the shards."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.settings import Settings
from core.stripe_errors import StripeOutcomeUnknown
from payouts.errors import SimulatedCrash
from payouts.jobs import (
    RELEASE_JOB,
    SHARDS,
    job_lock,
    run_cycle,
    run_payout_job,
    run_release_job,
)
from payouts.transfer import CrashHook
from tests.payouts.emu import ledger_is_consistent
from tests.payouts.helpers import T0, FakeStripe, add_earning, make_coach, trial_balance_is_zero

DUE = T0 + timedelta(hours=72)
COACHES = 12


def crash_at_nth(step: str, n: int) -> CrashHook:
    """Crash the n-th time any worker reaches ``step`` (the others are mid-way then)."""
    seen = Counter[str]()

    def hook(here: str) -> None:
        seen[here] += 1
        if here == step and seen[here] == n:
            raise SimulatedCrash(here)

    return hook


@pytest.mark.parametrize("step", ["during_reserve", "after_transfer", "during_settle"])
async def test_crash_in_one_worker_while_others_run_then_rerun_pays_each_coach_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    stripe: FakeStripe,
    step: str,
) -> None:
    # Half of them paid before (in-transit account there): both reserve paths.
    coaches = [await make_coach(tx, in_transit=i % 2 == 0) for i in range(COACHES)]
    for i, coach in enumerate(coaches):
        await add_earning(tx, coach, gross=10_000 + i)
        await add_earning(tx, coach, gross=2_000 + i)
    await tx.commit()
    # Some answers lost after Stripe made the transfer: left pending, replayed by key.
    stripe.faults.extend(StripeOutcomeUnknown("timeout after commit") for _ in range(2))
    settings = Settings(job_batch_size=5, db_pool_size=6, stripe_secret_key=None)
    clock.set(DUE)
    with pytest.raises(SimulatedCrash):
        await run_cycle(
            factory,
            gateway=stripe,  # type: ignore[arg-type]
            clock=clock,
            settings=settings,
            concurrency=4,
            hook=crash_at_nth(step, 5),
        )
    for _ in range(3):
        await run_cycle(factory, gateway=stripe, clock=clock, settings=settings, concurrency=4)  # type: ignore[arg-type]

    per_coach = Counter(int(t.metadata["coach_id"]) for t in stripe.transfers.values())
    assert per_coach == Counter(dict.fromkeys(coaches, 1))  # every coach, exactly once
    rows = (
        await tx.execute(
            text(
                "SELECT p.status, p.amount, p.stripe_transfer_id, p.attempts, "
                "(SELECT count(*) FROM ledger_transactions t "
                " WHERE t.payout_id = p.id) AS postings, "
                "(SELECT count(*) FROM earnings e WHERE e.payout_id = p.id "
                " AND e.status = 'paid') AS earnings "
                "FROM payouts p ORDER BY p.id"
            )
        )
    ).all()
    assert len(rows) == COACHES
    for r in rows:
        assert r.status == "paid" and r.postings == 2 and r.earnings == 2 and r.attempts >= 1
        assert stripe.transfers[r.stripe_transfer_id].amount == r.amount
    owed = await tx.scalar(
        text(
            "SELECT COALESCE(sum(s.balance), 0) FROM ledger_balance_slots s "
            "JOIN ledger_accounts a ON a.id = s.account_id WHERE a.owner_type = 'coach'"
        )
    )
    assert owed == 0
    assert await trial_balance_is_zero(tx) and await ledger_is_consistent(tx)


async def test_two_payout_runs_at_once_split_the_shards_and_pay_each_coach_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    stripe: FakeStripe,
) -> None:
    coaches = [await make_coach(tx, in_transit=i % 2 == 0) for i in range(3 * SHARDS)]
    for coach in coaches:
        await add_earning(tx, coach, gross=10_000)
    await tx.commit()
    settings = Settings(job_batch_size=5, db_pool_size=6, stripe_secret_key=None)
    clock.set(DUE)
    await run_release_job(factory, clock=clock, settings=settings)
    kw: dict[str, Any] = {"gateway": stripe, "clock": clock, "settings": settings, "concurrency": 2}
    a, b = await asyncio.gather(run_payout_job(factory, **kw), run_payout_job(factory, **kw))
    assert a.ran and b.ran  # payout runs share the release lock, not the work
    assert a.shards + b.shards == SHARDS  # each shard taken by exactly one of them
    assert a.paid + b.paid == len(coaches) and not a.errors and not b.errors
    per_coach = Counter(int(t.metadata["coach_id"]) for t in stripe.transfers.values())
    assert per_coach == Counter(dict.fromkeys(coaches, 1))
    # A release run is kept out while a payout run holds the shared lock.
    async with job_lock(factory, RELEASE_JOB) as got:
        assert got
        assert not (await run_payout_job(factory, **kw)).ran
    assert await trial_balance_is_zero(tx) and await ledger_is_consistent(tx)
