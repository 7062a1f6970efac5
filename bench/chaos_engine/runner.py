"""One seeded run (a simulated week under faults, then a drain and the checks), and many.

Run ``i`` of ``--seed S`` uses seed ``S + i`` for everything it decides (the
population, the actions, the fault plan, the emulator's fault generator), so a
failing run replays alone with ``--seed S+i --runs 1``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import text

from core.inbox import HandlerContext, reschedule
from payouts.jobs import run_cycle
from sessions.cancellation import settle_owed

from .actions import ACTIONS, CONCURRENT_ACTIONS, Run, a_cycle, a_webhooks
from .faults import ChaosGateway, FaultPlan
from .invariants import check_all
from .stripe_events import EventPump
from .world import MAX_RETRIES, Env, World, populate, run_settings

STEP = timedelta(hours=8, minutes=24)  # 20 steps: a week


@dataclass
class RunResult:
    seed: int
    seconds: float
    faults: Counter[str]
    outcomes: Counter[str]
    violations: list[tuple[str, str]] = field(default_factory=list)


async def run_one(env: Env, seed: int, *, steps: int = 20, concurrent: bool = False) -> RunResult:
    started = time.perf_counter()
    clock = await env.reset()
    rng = random.Random(seed)
    plan = FaultPlan.draw(seed, concurrent=concurrent)
    settings = run_settings(env, rng)
    world = World(env, rng, settings, env.gateways[rng.choice(MAX_RETRIES)], clock)
    env.control("POST", "config", {"funds_delay_seconds": rng.choice((0, 0, 2 * 86400))})
    await populate(world, coaches=3, mentees=rng.randint(3, 6), sessions=rng.randint(3, 5))
    gateway = ChaosGateway(world.gateway, plan)
    ctx = HandlerContext(gateway=gateway, clock=clock, settings=settings)  # type: ignore[arg-type]
    pump = EventPump(world, plan, ctx)
    run = Run(world, plan, gateway, pump, ctx)
    await pump.deliver(everything=True)  # the onboarding's account.updated

    env.control("POST", "faults", plan.emulator)
    plan.armed = True
    table = CONCURRENT_ACTIONS if concurrent else ACTIONS
    actions = [a for a, _ in table]
    weights = [w for _, w in table]
    for _ in range(steps):
        world.advance(STEP + timedelta(minutes=rng.randint(-60, 60)))
        for action in rng.choices(actions, weights, k=rng.randint(1, 3)):
            await run.guard(action.__name__[2:], _bind(action, run))
        # What a deployment does on its own between people's actions: Stripe
        # delivers, the scheduler runs the jobs.
        if rng.random() < 0.7:
            await run.guard("webhooks", _bind(a_webhooks, run))
        if rng.random() < 0.5:
            await run.guard("cycle", _bind(a_cycle, run))
    plan.armed = False
    env.control("DELETE", "faults")
    plan.add_emulator_stats(env.control("GET", "stats"))
    await drain(run)
    violations = await check_all(world)
    violations += [("unexpected_error", e) for e in run.errors]
    return RunResult(seed, time.perf_counter() - started, plan.counts, run.outcomes, violations)


def _bind(action: Callable[[Run], object], run: Run) -> Callable[[], object]:
    return lambda: action(run)  # type: ignore[return-value]


async def drain(run: Run) -> None:
    """Faults off, accounts back in order, funds settled, time past every hold: then let
    webhooks, the inbox's retries and the payout cycle run until nothing moves."""
    world, pump, env = run.world, run.pump, run.world.env
    for coach in world.coaches:
        env.control("POST", f"accounts/{coach.account}/complete_onboarding")
    world.advance(timedelta(days=4))
    env.control("POST", "balance/available")
    quiet, last = 0, ""
    for _ in range(12):
        moved = await pump.deliver(everything=True)
        given_up = await pump.given_up()
        if given_up:
            run.plan.counts["inbox_gave_up"] += len(given_up)
            async with world.factory() as db, db.begin():
                for row_id in given_up:  # what an operator would do
                    await reschedule(db, row_id, at=world.clock.now())
        moved += await pump.process_due(far=True)
        result = await run_cycle(
            world.factory, gateway=world.gateway, clock=world.clock, settings=world.settings
        )
        # A payout waiting on platform funds that are not there is settled for now.
        outcomes = result.payouts.outcomes
        moved += result.payouts.created + sum(outcomes.values()) - outcomes["waiting_funds"]
        moved += result.release.released
        settled = await settle_owed(world.factory, gateway=world.gateway, clock=world.clock)
        moved += len(settled.refunded) + len(settled.closed)
        moved += await pump.deliver(everything=True)
        moved += await pump.process_due(far=True)
        last = f"{result}, {moved} moved"
        quiet = quiet + 1 if moved == 0 else 0
        if quiet >= 2:
            return
        world.advance(timedelta(days=1))  # daily schedules due again, backoffs over
        env.control("POST", "balance/available")
    run.errors.append(f"drain: still moving after 12 rounds; the last: {last}")


async def open_payouts(run: Run) -> int:
    async with run.world.factory() as db:
        found = await db.scalar(
            text("SELECT count(*) FROM payouts WHERE status IN ('pending', 'waiting_funds')")
        )
    return int(found or 0)
