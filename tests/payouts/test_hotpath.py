"""The payout job's one-statement reserve and settle (payouts/hotpath.py) write what the
exact path writes, and decline (writing nothing) whenever any condition is off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.settings import Settings
from ledger.accounts import AccountRef, Kind, get_account_id
from payouts.hotpath import reserve_due
from payouts.jobs import run_cycle, run_release_job
from payouts.models import Payout
from payouts.service import Refusal, reserve
from tests.payouts.emu import ledger_is_consistent
from tests.payouts.helpers import T0, FakeStripe, add_earning, make_coach, trial_balance_is_zero

DUE = T0 + timedelta(hours=72)


async def released_coach(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    **coach: Any,
) -> int:
    coach_id = await make_coach(tx, **coach)
    await add_earning(tx, coach_id, gross=10_000)
    await add_earning(tx, coach_id, gross=2_500)
    await tx.commit()
    clock.set(DUE)
    await run_release_job(factory, clock=clock, settings=settings)
    return coach_id


async def written(tx: AsyncSession, payout_id: int) -> dict[str, Any]:
    """What a reservation wrote, by account kind (ids differ between coaches)."""
    row = (
        await tx.execute(
            text(
                "SELECT p.status, p.amount, p.destination IS NOT NULL AS dest, p.attempts, "
                "t.type, t.idempotency_key = 'payout:' || p.id AS keyed, t.coach_id = p.coach_id "
                "AS coach, t.payout_id = p.id AS payout, "
                "(SELECT count(*) FROM earnings e WHERE e.payout_id = p.id) AS earnings "
                "FROM payouts p JOIN ledger_transactions t ON t.id = p.reserve_transaction_id "
                "WHERE p.id = :p"
            ),
            {"p": payout_id},
        )
    ).one()
    legs = await tx.execute(
        text(
            "SELECT a.kind, e.amount FROM ledger_entries e "
            "JOIN ledger_accounts a ON a.id = e.account_id "
            "JOIN payouts p ON p.reserve_transaction_id = e.transaction_id WHERE p.id = :p"
        ),
        {"p": payout_id},
    )
    return {**row._asdict(), "legs": sorted((k, int(a)) for k, a in legs)}


async def test_one_statement_reserve_writes_what_reserve_writes(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    fast = await released_coach(factory, tx, clock, settings, in_transit=True)
    exact = await released_coach(factory, tx, clock, settings, in_transit=True)
    async with factory() as db, db.begin():
        a = await reserve_due(db, coach_id=fast, currency="usd", schedule="instant", now=DUE)
        b = await reserve(db, coach_id=exact, currency="usd", now=DUE)
        assert isinstance(a, Payout) and isinstance(b, Payout)
        ids = (a.id, b.id)
        # The object is the row as written: the session has nothing left to flush.
        assert (a.amount, a.status) == (10_000, "pending") and a.reserve_transaction_id
        assert not db.dirty and not db.new
    one, two = await written(tx, ids[0]), await written(tx, ids[1])
    assert one == two
    assert one["legs"] == [("available", 10_000), ("in_transit", -10_000)]
    assert (one["status"], one["amount"], one["earnings"], one["type"]) == (
        "pending",
        10_000,
        2,
        "payout",
    )
    assert await trial_balance_is_zero(tx) and await ledger_is_consistent(tx)


async def _hold_balance(factory: async_sessionmaker[AsyncSession], coach: int) -> Any:
    """Another transaction holding the coach's available balance (a refund, a worker)."""
    db = factory()
    await db.begin()
    await db.execute(
        text(
            "SELECT 1 FROM ledger_balance_slots WHERE account_id = (SELECT id FROM "
            "ledger_accounts WHERE owner_id = :c AND kind = 'available') FOR UPDATE"
        ),
        {"c": coach},
    )
    return db


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("paused", "payouts are paused"),
        ("disabled", "the Connect account cannot receive payouts"),
        ("minimum", "below the minimum"),
        ("open", "a payout is already open"),
        ("not_due", "the schedule is not due"),
        ("schedule_changed", None),  # the candidate read "instant"; the coach is daily now
        ("no_in_transit", None),  # the exact path creates the account and pays
        ("busy", "balance busy"),
        ("slot_busy", "balance busy"),  # one of two slots held: never a partial sum
    ],
)
async def test_declines_write_nothing_and_reserve_gives_the_reason(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    case: str,
    reason: str | None,
) -> None:
    coach_kw: dict[str, Any] = {
        "paused": {"paused": True},
        "disabled": {"payouts_enabled": False},
        "minimum": {"minimum": {"usd": 50_000}},
        "not_due": {"schedule": "daily"},
        "schedule_changed": {"schedule": "daily"},
        "no_in_transit": {"in_transit": False},
    }.get(case, {})
    coach = await released_coach(factory, tx, clock, settings, **{"in_transit": True, **coach_kw})
    schedule = "daily" if case == "not_due" else "instant"
    if case in ("open", "not_due"):  # an open payout, or one made today already
        status = "pending" if case == "open" else "paid"
        await tx.execute(
            text(
                "INSERT INTO payouts (coach_id, currency, amount, status, destination, "
                "stripe_transfer_id, created_at, updated_at) VALUES (:c, 'usd', 1, :s, 'acct_x', "
                ":tr, :t, :t)"
            ),
            {
                "c": coach,
                "s": status,
                "tr": "tr_before" if status == "paid" else None,
                "t": DUE - timedelta(hours=1),
            },
        )
        await tx.commit()
    if case == "slot_busy":  # the available account in two slots, the second one held
        available = await get_account_id(tx, AccountRef.coach(coach, Kind.AVAILABLE, "usd"))
        two = text("UPDATE ledger_accounts SET slots = 2 WHERE id = :a")
        await tx.execute(two, {"a": available})
        await tx.execute(
            text("INSERT INTO ledger_balance_slots (account_id, slot, balance) VALUES (:a, 1, 0)"),
            {"a": available},
        )
        await tx.commit()
    holder = None
    if case == "busy":
        holder = await _hold_balance(factory, coach)
    if case == "slot_busy":
        holder = factory()
        await holder.begin()
        await holder.execute(
            text(
                "SELECT 1 FROM ledger_balance_slots WHERE account_id = :a AND slot = 1 FOR UPDATE"
            ),
            {"a": available},
        )
    before = await tx.scalar(text("SELECT count(*) FROM ledger_transactions"))
    try:
        async with factory() as db, db.begin():
            made = await reserve_due(db, coach_id=coach, currency="usd", schedule=schedule, now=DUE)
            assert made is None
            assert await db.scalar(text("SELECT count(*) FROM ledger_transactions")) == before
            assert not await db.scalar(
                text("SELECT count(*) FROM earnings WHERE payout_id IS NOT NULL")
            )
            exact = await reserve(db, coach_id=coach, currency="usd", now=DUE)
            if reason is None:
                assert isinstance(exact, Payout) and exact.amount == 10_000
            else:
                assert isinstance(exact, Refusal) and reason in exact.reason
            await db.rollback()
    finally:
        if holder is not None:
            await holder.rollback()
            await holder.close()


async def test_job_pays_coaches_on_both_paths_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    stripe: FakeStripe,
) -> None:
    coaches = [await make_coach(tx, in_transit=i % 2 == 0) for i in range(6)]
    for c in coaches:
        await add_earning(tx, c, gross=10_000)
    await tx.commit()
    clock.set(DUE)
    result = await run_cycle(factory, gateway=stripe, clock=clock, settings=settings)  # type: ignore[arg-type]
    assert result.payouts.paid == 6 and result.payouts.errors == 0
    assert sorted(int(t.metadata["coach_id"]) for t in stripe.transfers.values()) == coaches
    settled = (
        await tx.execute(
            text(
                "SELECT p.status, p.attempts, a.outcome, "
                "a.stripe_transfer_id = p.stripe_transfer_id, "
                "(SELECT count(*) FROM earnings e WHERE e.payout_id = p.id AND e.status = 'paid'), "
                "(SELECT count(*) FROM ledger_transactions t WHERE t.payout_id = p.id) "
                "FROM payouts p JOIN payout_attempts a ON a.payout_id = p.id ORDER BY p.id"
            )
        )
    ).all()
    assert [tuple(r) for r in settled] == [("paid", 1, "paid", True, 1, 2)] * 6
    assert await trial_balance_is_zero(tx) and await ledger_is_consistent(tx)
