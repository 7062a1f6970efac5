"""A transfer Stripe keeps refusing backs the coach off (1 h, 2 h, ...) and pauses their
payouts at the third refusal in a row; a paid transfer or an admin's resume starts afresh.
Against the emulator, whose restricted account refuses transfers as Stripe does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connect.models import CoachProfile, PauseSource
from core.audit import AuditEntry
from core.clock import FrozenClock
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from payouts.admin import retry_payout, set_paused
from payouts.jobs import PayoutResult, run_cycle
from payouts.models import Payout
from payouts.refusals import PAUSE_AFTER_REFUSALS, refusal_backoff
from tests.payouts.emu import emulator_account, emulator_gateway, fund, transfers_for
from tests.payouts.helpers import T0, add_earning, make_coach, owed, trial_balance_is_zero

DUE = T0 + timedelta(hours=72)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=5) as s:
        yield s


@pytest.fixture
async def emu(server: EmulatorServer) -> AsyncIterator[EmulatorServer]:
    server.control("POST", "reset")
    fund(server)
    yield server
    server.control("DELETE", "faults")


@pytest.fixture
async def gateway(emu: EmulatorServer) -> AsyncIterator[StripeGateway]:
    gw = emulator_gateway(emu, max_retries=0)
    yield gw
    await gw.aclose()


class World:
    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        tx: AsyncSession,
        clock: FrozenClock,
        settings: Settings,
        gateway: StripeGateway,
        emu: EmulatorServer,
    ) -> None:
        self.factory, self.tx, self.clock = factory, tx, clock
        self.settings, self.gateway, self.emu = settings, gateway, emu

    async def coach(self, schedule: str = "instant") -> tuple[int, str]:
        account = await emulator_account(self.gateway, self.emu)
        coach = await make_coach(self.tx, account=account, schedule=schedule, in_transit=True)
        await add_earning(self.tx, coach, gross=10_000)
        await self.tx.commit()
        return coach, account

    def refuse(self, account: str) -> None:
        """Stripe keeps the account, but it cannot receive transfers (as after a
        requirement went past due). Our copy still says payouts are enabled: the
        account.updated event is not here yet, so only Stripe's refusal tells."""
        self.emu.control(
            "POST",
            f"accounts/{account}/restrict",
            {"payouts_enabled": True, "transfers": "inactive"},
        )

    def backoff(self, refusals: int) -> timedelta:
        return refusal_backoff(refusals, self.settings)

    def accept(self, account: str) -> None:
        self.emu.control("POST", f"accounts/{account}/complete_onboarding")

    async def run(self, at: Any = None) -> PayoutResult:
        if at is not None:
            self.clock.set(at)
        cycle = await run_cycle(
            self.factory, gateway=self.gateway, clock=self.clock, settings=self.settings
        )
        return cycle.payouts

    async def payouts(self, coach: int) -> list[Payout]:
        self.tx.expire_all()
        stmt = select(Payout).where(Payout.coach_id == coach).order_by(Payout.id)
        return list((await self.tx.execute(stmt)).scalars())

    async def profile(self, coach: int) -> CoachProfile:
        self.tx.expire_all()
        found = await self.tx.get(CoachProfile, coach)
        assert found is not None
        return found


@pytest.fixture
def world(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    gateway: StripeGateway,
    emu: EmulatorServer,
) -> World:
    return World(factory, tx, clock, settings, gateway, emu)


def _transfer_posts(emu: EmulatorServer) -> int:
    return int(emu.control("GET", "stats")["requests"].get("POST /v1/transfers", 0))


@pytest.mark.parametrize("schedule", ["instant", "daily"])
async def test_four_runs_against_a_refusing_stripe_make_one_failed_payout_then_pause(
    world: World, schedule: str
) -> None:
    coach, account = await world.coach(schedule)
    world.refuse(account)
    for minutes in (0, 5, 10, 15):  # four runs, five minutes apart (the job's interval)
        result = await world.run(DUE + timedelta(minutes=minutes))
    [failed] = await world.payouts(coach)
    assert (
        failed.status == "failed"
        and failed.failure_code == "insufficient_capabilities_for_transfer"
    )
    assert "next try after" in (failed.failure_reason or "")
    assert _transfer_posts(world.emu) == 1
    assert result.created == 0 and result.errors == 0  # the candidates leave it out
    profile = await world.profile(coach)
    assert profile.payout_refusals == 1 and profile.payout_retry_at == DUE + refusal_backoff(
        1, world.settings
    )
    assert profile.payout_last_refusal and not profile.payouts_paused

    # Each backoff waited out: a second refusal (then 2 h), a third: paused.
    await world.run(DUE + world.backoff(1))
    second_at = DUE + world.backoff(1)
    assert (await world.profile(coach)).payout_retry_at == second_at + refusal_backoff(
        2, world.settings
    )
    await world.run(second_at + timedelta(hours=1))  # still backing off
    assert len(await world.payouts(coach)) == 2
    await world.run(second_at + world.backoff(2))
    profile = await world.profile(coach)
    assert profile.payout_refusals == PAUSE_AFTER_REFUSALS == 3
    assert profile.payouts_paused and profile.payouts_paused_by == PauseSource.TRANSFER_REFUSALS
    assert "refused 3 transfers in a row" in (profile.payouts_paused_reason or "")
    last = (await world.payouts(coach))[-1]
    assert "payouts paused after 3 refused transfers" in (last.failure_reason or "")

    # Paused: days of runs make nothing; the money waits in available.
    for days in (1, 2, 7):
        await world.run(second_at + timedelta(days=days))
    assert len(await world.payouts(coach)) == 3 and _transfer_posts(world.emu) == 3
    assert await owed(world.tx, coach) == {"pending": 0, "available": 8_000, "in_transit": 0}
    assert not transfers_for(world.emu) and await trial_balance_is_zero(world.tx)
    # The automatic pause reads apart from an admin's in the audit log too.
    entry = (
        await world.tx.execute(
            select(AuditEntry).where(
                AuditEntry.action == "payouts.pause", AuditEntry.entity_id == str(coach)
            )
        )
    ).scalar_one()
    assert entry.actor_kind == "system" and entry.actor_user_id is None
    assert (entry.after or {})["paused_by"] == "transfer_refusals"


async def test_a_paid_transfer_resets_the_count(world: World) -> None:
    coach, account = await world.coach()
    world.refuse(account)
    await world.run(DUE)
    await world.run(DUE + world.backoff(1))
    assert (await world.profile(coach)).payout_refusals == 2
    world.accept(account)
    again = DUE + world.backoff(1) + world.backoff(2)
    result = await world.run(again)
    assert result.paid == 1 and len(transfers_for(world.emu)) == 1
    profile = await world.profile(coach)
    assert (profile.payout_refusals, profile.payout_retry_at) == (0, None)
    assert profile.payout_last_refusal is None and not profile.payouts_paused
    # A refusal after the success is the first of a new run: 1 h, no pause.
    await add_earning(world.tx, coach, gross=5_000, paid_at=again)
    await world.tx.commit()
    world.refuse(account)
    later = again + timedelta(hours=80)
    await world.run(later)
    profile = await world.profile(coach)
    assert profile.payout_refusals == 1 and profile.payout_retry_at == later + refusal_backoff(
        1, world.settings
    )


async def test_unknown_outcomes_and_short_platform_funds_are_not_refusals(world: World) -> None:
    coach, _ = await world.coach()
    world.emu.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/transfers", "method": "POST", "faults": ["500", "drop"]},
    )
    assert (await world.run(DUE)).outcomes["unknown"] == 1
    assert (await world.run(DUE)).outcomes["unknown"] == 1  # same key, again unknown
    profile = await world.profile(coach)
    assert (profile.payout_refusals, profile.payout_retry_at) == (0, None)
    assert (await world.run(DUE)).paid == 1  # the third try, same key, goes through

    short, _ = await world.coach()
    with world.emu.state.lock:
        world.emu.state.funds("usd").available = 1
    assert (await world.run(DUE + timedelta(days=1))).outcomes["waiting_funds"] == 1
    assert (await world.profile(short)).payout_refusals == 0


async def test_resume_clears_the_backoff_and_an_admin_pause_reads_as_an_admins(
    world: World,
) -> None:
    coach, account = await world.coach()
    world.refuse(account)
    for i in range(PAUSE_AFTER_REFUSALS):
        await world.run(DUE + timedelta(days=i))
    assert (await world.profile(coach)).payouts_paused_by == PauseSource.TRANSFER_REFUSALS
    world.accept(account)
    async with world.factory() as db, db.begin():
        admin = await db.scalar(
            text("INSERT INTO users (sub, role) VALUES ('adm', 'admin') RETURNING id")
        )
        resumed = await set_paused(
            db,
            coach_id=coach,
            paused=False,
            reason=None,
            now=world.clock.now(),
            actor_user_id=admin,
        )
        assert (resumed.payout_refusals, resumed.payout_retry_at) == (0, None)
        assert resumed.payouts_paused_by is None
    assert (await world.run()).paid == 1
    # An admin's own pause (and the other callers' keyword-only signature) is told apart.
    async with world.factory() as db, db.begin():
        paused = await set_paused(
            db, coach_id=coach, paused=True, reason="KYC review", now=world.clock.now(),
            actor_user_id=admin,
        )  # fmt: skip
        assert paused.payouts_paused_by == PauseSource.ADMIN
        system = await set_paused(
            db, coach_id=coach, paused=True, reason="bank payout failed", now=world.clock.now()
        )
        assert system.payouts_paused_by == PauseSource.SYSTEM


async def test_an_admin_retry_of_a_refused_payout_is_not_held_by_the_backoff(
    world: World,
) -> None:
    coach, account = await world.coach()
    world.refuse(account)
    await world.run(DUE)
    [failed] = await world.payouts(coach)
    world.accept(account)
    async with world.factory() as db, db.begin():
        made = await retry_payout(db, payout_id=failed.id, now=DUE + timedelta(minutes=1))
    result = await world.run(DUE + timedelta(minutes=2))  # inside the backoff
    assert result.outcomes["paid"] == 1
    assert [p.status for p in await world.payouts(coach)] == ["failed", "paid"]
    assert made.retry_of == failed.id
    assert (await world.profile(coach)).payout_refusals == 0


async def test_the_backoff_and_the_pause_are_settings(
    factory: async_sessionmaker[AsyncSession],
    tx: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    gateway: StripeGateway,
    emu: EmulatorServer,
) -> None:
    """COACHPAY_PAYOUT_REFUSAL_BACKOFF_BASE_MINUTES=5, _PAUSE_AFTER_REFUSALS=2."""
    changed = settings.model_copy(
        update={"payout_refusal_backoff_base_minutes": 5, "payout_pause_after_refusals": 2}
    )
    world = World(factory, tx, clock, changed, gateway, emu)
    coach, account = await world.coach()
    world.refuse(account)
    await world.run(DUE)
    profile = await world.profile(coach)
    assert profile.payout_retry_at == DUE + timedelta(minutes=5) and not profile.payouts_paused
    await world.run(DUE + timedelta(minutes=5))
    profile = await world.profile(coach)
    assert profile.payout_retry_at == DUE + timedelta(minutes=15)
    assert profile.payouts_paused_by == PauseSource.TRANSFER_REFUSALS
