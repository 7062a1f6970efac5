"""End to end against the Stripe emulator: crashes at every step, faults, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from payouts.errors import SimulatedCrash
from payouts.jobs import run_cycle
from payouts.models import Payout
from payouts.transfer import crash_at
from tests.payouts.emu import (
    emulator_account,
    emulator_gateway,
    fund,
    ledger_is_consistent,
    transfers_for,
)
from tests.payouts.helpers import T0, add_earning, make_coach, owed, trial_balance_is_zero

DUE = T0 + timedelta(hours=72)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=3) as s:
        yield s


@pytest.fixture
async def emu(server: EmulatorServer) -> AsyncIterator[EmulatorServer]:
    server.control("POST", "reset")
    fund(server)
    yield server
    server.control("DELETE", "faults")


@pytest.fixture
async def gateway(emu: EmulatorServer) -> AsyncIterator[StripeGateway]:
    gw = emulator_gateway(emu)
    yield gw
    await gw.aclose()


async def one_coach(
    tx: AsyncSession, gateway: StripeGateway, emu: EmulatorServer, *, in_transit: bool = False
) -> int:
    account = await emulator_account(gateway, emu)
    coach = await make_coach(tx, account=account, in_transit=in_transit)
    await add_earning(tx, coach, gross=10_000)
    await add_earning(tx, coach, gross=5_000)
    await tx.commit()
    return coach


async def the_payout(tx: AsyncSession, coach: int) -> Payout:
    tx.expire_all()
    return (await tx.execute(select(Payout).where(Payout.coach_id == coach))).scalar_one()


async def assert_paid_once(tx: AsyncSession, emu: EmulatorServer, coach: int) -> None:
    payout = await the_payout(tx, coach)
    [transfer] = transfers_for(emu, payout_id=payout.id)
    assert payout.status == "paid" and payout.stripe_transfer_id == transfer["id"]
    assert transfer["amount"] == payout.amount == 12_000
    assert len(transfers_for(emu)) == 1
    assert await owed(tx, coach) == {"pending": 0, "available": 0, "in_transit": 0}
    assert await trial_balance_is_zero(tx) and await ledger_is_consistent(tx)
    n = await tx.scalar(
        text("SELECT count(*) FROM ledger_transactions WHERE payout_id = :p"), {"p": payout.id}
    )
    assert n == 2  # reserve and settle, nothing twice


@pytest.mark.parametrize(
    "step",
    [
        "during_reserve",
        "after_reserve",
        "before_transfer",
        "after_transfer",
        "during_settle",
        "before_commit",
    ],
)
# in_transit: the coach was paid before, so reserve and settle each run as one
# statement (payouts/hotpath.py); without it the exact path creates the account.
@pytest.mark.parametrize("in_transit", [False, True], ids=["exact_path", "one_statement"])
async def test_crash_at_each_step_then_rerun_pays_exactly_once(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    gateway: StripeGateway,
    emu: EmulatorServer,
    step: str,
    in_transit: bool,
) -> None:
    coach = await one_coach(tx, gateway, emu, in_transit=in_transit)
    clock.set(DUE)
    with pytest.raises(SimulatedCrash):
        await run_cycle(
            factory, gateway=gateway, clock=clock, settings=settings, hook=crash_at(step)
        )
    made = len(transfers_for(emu))
    assert made == (1 if step in ("after_transfer", "during_settle", "before_commit") else 0)
    await run_cycle(factory, gateway=gateway, clock=clock, settings=settings)
    await assert_paid_once(tx, emu, coach)
    await run_cycle(factory, gateway=gateway, clock=clock, settings=settings)
    assert len(transfers_for(emu)) == 1


async def test_connection_dropped_after_stripe_committed_is_replayed_not_repeated(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    emu: EmulatorServer,
) -> None:
    gw = emulator_gateway(emu, max_retries=0)  # no in-call retry: the next run must fix it
    coach = await one_coach(tx, gw, emu)
    emu.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/transfers", "method": "POST", "faults": ["drop_after_commit"]},
    )
    clock.set(DUE)
    result = await run_cycle(factory, gateway=gw, clock=clock, settings=settings)
    assert result.payouts.outcomes["unknown"] == 1
    assert (await the_payout(tx, coach)).status == "pending" and len(transfers_for(emu)) == 1
    await run_cycle(factory, gateway=gw, clock=clock, settings=settings)
    await assert_paid_once(tx, emu, coach)
    assert emu.control("GET", "stats")["idempotent_replays"] >= 1
    await gw.aclose()


async def test_429_and_500_then_success_pays_in_one_run(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    gateway: StripeGateway,
    emu: EmulatorServer,
) -> None:
    coach = await one_coach(tx, gateway, emu)
    emu.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/transfers", "method": "POST", "faults": ["429", "500"]},
    )
    clock.set(DUE)
    result = await run_cycle(factory, gateway=gateway, clock=clock, settings=settings)
    assert result.payouts.paid == 1
    await assert_paid_once(tx, emu, coach)
    faults = emu.control("GET", "stats")["faults"]
    assert faults["429"] == 1 and faults["500"] == 1


async def test_account_that_cannot_receive_transfers_fails_the_payout_with_the_reason(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    gateway: StripeGateway,
    emu: EmulatorServer,
) -> None:
    coach = await one_coach(tx, gateway, emu)
    acct = (
        await tx.execute(
            text("SELECT stripe_account_id FROM connect_accounts WHERE coach_id = :c"), {"c": coach}
        )
    ).scalar_one()
    emu.control(
        "POST", f"accounts/{acct}/restrict", {"payouts_enabled": True, "transfers": "inactive"}
    )
    clock.set(DUE)
    result = await run_cycle(factory, gateway=gateway, clock=clock, settings=settings)
    assert result.payouts.outcomes["failed"] == 1
    payout = await the_payout(tx, coach)
    assert payout.status == "failed"
    assert payout.failure_code == "insufficient_capabilities_for_transfer"
    assert "capabilit" in (payout.failure_reason or "")
    assert await owed(tx, coach) == {"pending": 0, "available": 12_000, "in_transit": 0}
    assert not transfers_for(emu) and await trial_balance_is_zero(tx)


async def test_timeout_leaves_it_pending_and_next_run_settles_without_second_transfer(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    emu: EmulatorServer,
) -> None:
    gw = emulator_gateway(emu, max_retries=0, timeout=0.5)
    coach = await one_coach(tx, gw, emu)
    emu.control("POST", "faults", {"timeout_seconds": 1})
    emu.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/transfers", "method": "POST", "faults": ["timeout_after_commit"]},
    )
    clock.set(DUE)
    result = await run_cycle(factory, gateway=gw, clock=clock, settings=settings)
    assert result.payouts.outcomes["unknown"] == 1
    payout = await the_payout(tx, coach)
    assert payout.status == "pending" and payout.last_error
    assert await owed(tx, coach) == {"pending": 0, "available": 0, "in_transit": 12_000}
    await run_cycle(factory, gateway=gw, clock=clock, settings=settings)
    await assert_paid_once(tx, emu, coach)
    await gw.aclose()


async def test_platform_balance_short_waits_for_funds_then_pays(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    gateway: StripeGateway,
    emu: EmulatorServer,
) -> None:
    coach = await one_coach(tx, gateway, emu)
    with emu.state.lock:
        emu.state.funds("usd").available = 100
    clock.set(DUE)
    await run_cycle(factory, gateway=gateway, clock=clock, settings=settings)
    payout = await the_payout(tx, coach)
    assert payout.status == "waiting_funds" and "balance" in (payout.last_error or "").lower()
    fund(emu)
    clock.set(payout.next_attempt_at)
    await run_cycle(factory, gateway=gateway, clock=clock, settings=settings)
    await assert_paid_once(tx, emu, coach)
