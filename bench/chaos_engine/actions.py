"""The things that happen in a simulated week: people, Stripe, and the jobs.

Each action runs in its own database transaction (a request or a job) and
ends in one of: done, refused by the domain (a 4xx), Stripe's answer unknown,
or a simulated crash; only an exception of any other kind is a finding.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text

from core.errors import DomainError
from core.inbox import HandlerContext, claim_due, process_event
from payouts.errors import SimulatedCrash
from payouts.jobs import run_cycle
from sessions.audit import Actor
from sessions.booking import book
from sessions.booking_changes import cancel_booking, retry_booking
from sessions.cancellation import cancel_session, settle_owed
from sessions.refunds import refund_booking

from .faults import ChaosGateway, FaultPlan
from .stripe_events import EventPump
from .world import World, publish_session


@dataclass
class Run:
    world: World
    plan: FaultPlan
    gateway: ChaosGateway
    pump: EventPump
    ctx: HandlerContext
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # unexpected exceptions: findings

    async def guard(self, label: str, fn: Callable[[], Awaitable[str | None]]) -> None:
        try:
            self.outcomes[f"{label}:{await fn() or 'ok'}"] += 1
        except SimulatedCrash:
            self.outcomes[f"{label}:crashed"] += 1
        except DomainError as exc:
            self.outcomes[f"{label}:{type(exc).__name__}"] += 1
        except httpx.HTTPStatusError:
            self.outcomes[f"{label}:emulator_refused"] += 1
        except Exception as exc:
            self.errors.append(f"{label}: {type(exc).__name__}: {exc}"[:500])

    async def pick(self, sql: str, **params: Any) -> Any:
        async with self.world.factory() as db:
            rows = (await db.execute(text(sql), params)).all()
        return self.plan.rng.choice(rows) if rows else None


_PAY_OUTCOMES = ("succeeded",) * 6 + ("failed", "async_pending", "async_succeeded", "async_failed")


async def a_book(run: Run) -> str | None:
    """Book, and mostly pay at once (the checkout lapses in 30 minutes, a step is hours)."""
    w, rng = run.world, run.plan.rng
    upcoming = await run.pick(
        "SELECT id FROM coaching_sessions WHERE status = 'published' AND starts_at > :now",
        now=w.clock.now(),
    )
    # Mostly what a person would pick; now and then a session that refuses them.
    session_id = upcoming[0] if upcoming and rng.random() < 0.9 else rng.choice(w.sessions)
    mentee = rng.choice(w.mentees)
    async with w.factory() as db:  # the service commits its intent itself
        booking = await book(
            db,
            session_id=session_id,
            mentee_id=mentee,
            gateway=run.gateway,  # type: ignore[arg-type]
            clock=w.clock,
            settings=w.settings,
        )
        await db.commit()
        checkout = booking.checkout_session_id
    if rng.random() < 0.8:
        body = {"outcome": rng.choice(_PAY_OUTCOMES)}
        w.env.control("POST", f"checkout/sessions/{checkout}/pay", body)


async def a_pay(run: Run) -> str | None:
    row = await run.pick(
        "SELECT checkout_session_id FROM bookings WHERE status = 'pending' "
        "AND checkout_session_id IS NOT NULL"
    )
    if row is None:
        return "idle"
    outcome = run.plan.rng.choice(_PAY_OUTCOMES)
    run.world.env.control("POST", f"checkout/sessions/{row[0]}/pay", {"outcome": outcome})


async def a_finish_async(run: Run) -> str | None:
    store = run.world.env.emulator.state
    with store.lock:
        waiting = [
            cs["id"]
            for cs in store.checkout_sessions.values()
            if cs["status"] == "complete" and cs["payment_status"] == "unpaid"
        ]
    if not waiting:
        return "idle"
    outcome = run.plan.rng.choice(("async_succeeded", "async_succeeded", "async_failed"))
    cs = run.plan.rng.choice(waiting)
    run.world.env.control("POST", f"checkout/sessions/{cs}/pay", {"outcome": outcome})
    return None


async def a_retry(run: Run) -> str | None:
    row = await run.pick("SELECT id, mentee_id FROM bookings WHERE status = 'failed'")
    if row is None:
        return "idle"
    w = run.world
    async with w.factory() as db:  # the service commits its intent itself
        await retry_booking(
            db,
            booking_id=row[0],
            actor=Actor.user(row[1], "mentee"),
            gateway=run.gateway,  # type: ignore[arg-type]
            clock=w.clock,
            settings=w.settings,
        )
        await db.commit()


async def a_cancel(run: Run) -> str | None:
    row = await run.pick("SELECT id, mentee_id FROM bookings WHERE status IN ('pending', 'failed')")
    if row is None:
        return "idle"
    w = run.world
    async with w.factory() as db:  # the service commits its intent itself
        await cancel_booking(
            db,
            booking_id=row[0],
            actor=Actor.user(row[1], "mentee"),
            gateway=run.gateway,  # type: ignore[arg-type]
            clock=w.clock,
        )
        await db.commit()


_PAID = (
    "SELECT id, coach_id, amount - amount_refunded, payment_intent_id, charge_id FROM bookings "
    "WHERE status IN ('paid', 'partially_refunded') AND amount > amount_refunded"
)


async def a_refund(run: Run) -> str | None:
    row = await run.pick(_PAID)
    if row is None:
        return "idle"
    rng, w = run.plan.rng, run.world
    amount = None if rng.random() < 0.5 or row[2] < 2 else rng.randint(1, row[2] - 1)
    async with w.factory() as db:  # the service commits its intent itself
        await refund_booking(
            db,
            booking_id=row[0],
            actor=Actor.user(row[1], "coach"),
            amount=amount,
            gateway=run.gateway,  # type: ignore[arg-type]
            clock=w.clock,
        )
        await db.commit()


async def a_dashboard_refund(run: Run) -> str | None:
    """A refund made in Stripe's dashboard: only its webhooks tell us."""
    row = await run.pick(_PAID)
    if row is None:
        return "idle"
    amount = run.plan.rng.randint(1, row[2])
    await run.world.gateway.create_refund(
        payment_intent=row[3],
        amount=amount,
        metadata={},
        idempotency_key=f"dashboard:{uuid.uuid4()}",
    )


async def a_dispute(run: Run) -> str | None:
    row = await run.pick(_PAID + " AND charge_id IS NOT NULL")
    if row is None:
        return "idle"
    run.world.env.control("POST", f"charges/{row[4]}/dispute", {})
    return None


async def a_close_dispute(run: Run) -> str | None:
    store = run.world.env.emulator.state
    with store.lock:
        open_ = [d["id"] for d in store.disputes.values() if d["status"] == "needs_response"]
    if not open_:
        return "idle"
    outcome = run.plan.rng.choice(("won", "lost"))
    run.world.env.control(
        "POST", f"disputes/{run.plan.rng.choice(open_)}/close", {"outcome": outcome}
    )
    return None


async def a_restrict(run: Run) -> str | None:
    coach = run.plan.rng.choice(run.world.coaches)
    run.world.env.control("POST", f"accounts/{coach.account}/restrict", {})


async def a_reenable(run: Run) -> str | None:
    coach = run.plan.rng.choice(run.world.coaches)
    run.world.env.control("POST", f"accounts/{coach.account}/complete_onboarding")


async def a_bank_payout(run: Run) -> str | None:
    coach = run.plan.rng.choice(run.world.coaches)
    run.world.env.control("POST", f"accounts/{coach.account}/payouts", {"currency": "usd"})


async def a_publish(run: Run) -> str | None:
    w = run.world
    async with w.factory() as db, db.begin():
        await publish_session(db, w, run.plan.rng.choice(w.coaches).id, hours=(4, 96))
    return None


async def a_cancel_session(run: Run) -> str | None:
    w = run.world
    session_id = run.plan.rng.choice(w.sessions)
    async with w.factory() as db, db.begin():
        coach = (
            await db.execute(
                text("SELECT coach_id FROM coaching_sessions WHERE id = :s"), {"s": session_id}
            )
        ).scalar_one()
        await cancel_session(
            db, session_id=session_id, actor=Actor.user(coach, "coach"), clock=w.clock
        )
    report = await settle_owed(
        w.factory,
        gateway=run.gateway,  # type: ignore[arg-type]
        clock=w.clock,
        session_id=session_id,
    )
    return "waiting" if report.waiting else None


async def a_reverse(run: Run) -> str | None:
    """A transfer reversed in Stripe's dashboard (part of a payout taken back)."""
    row = await run.pick(
        "SELECT stripe_transfer_id, amount - reversed_amount FROM payouts "
        "WHERE status = 'paid' AND amount > reversed_amount"
    )
    if row is None:
        return "idle"
    await run.world.gateway.create_transfer_reversal(
        row[0],
        amount=run.plan.rng.randint(1, row[1]),
        metadata={},
        idempotency_key=f"dashboard:{uuid.uuid4()}",
    )
    return None


async def a_concurrent(run: Run) -> str | None:
    """Two things at once (two requests, a request and a job, two workers)."""
    picks = run.plan.rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS], k=2)
    await asyncio.gather(*(run.guard(f"concurrent_{a.__name__[2:]}", _call(a, run)) for a in picks))
    return None


def _call(action: Callable[[Run], Awaitable[str | None]], run: Run) -> Callable[[], Any]:
    return lambda: action(run)


async def a_cycle(run: Run) -> str | None:
    w = run.world
    result = await run_cycle(
        w.factory,
        gateway=run.gateway,  # type: ignore[arg-type]
        clock=w.clock,
        settings=w.settings,
        concurrency=run.plan.rng.choice((1, 2)) if run.plan.concurrent else 1,
        hook=run.plan.payout_hook,
    )
    for outcome, n in result.payouts.outcomes.items():
        run.outcomes[f"payout_{outcome}"] += n
    for reason, n in result.payouts.not_created.items():
        run.outcomes[f"payout_not_created:{reason}"] += n
    run.outcomes["released"] += result.release.released
    run.outcomes["job_errors"] += result.release.errors + result.payouts.errors


async def a_webhooks(run: Run) -> str | None:
    await run.pump.deliver()


async def a_process_due(run: Run) -> str | None:
    """One pass of the inbox worker over the events owed work (core.inbox.process_due's).

    A simulated crash kills the whole worker, as a real one would: the events it
    claimed but had not started wait out their lease, and one running beside it
    (a concurrent plan) is cancelled. Through ``EventPump.process_due`` the crash
    left ``asyncio.gather``'s other handlers running after the action returned:
    they re-read objects from Stripe while the next action called it too, so the
    seeded fault draws were dealt out in whatever order the machine's load gave.
    """
    w, plan = run.world, run.plan
    claimed = await claim_due(w.factory, now=w.clock.now(), batch=100)
    gate = asyncio.Semaphore(2 if plan.concurrent else 1)
    dead = asyncio.Event()

    async def one(row_id: int) -> None:
        async with gate:
            if dead.is_set():
                return  # claimed by a worker that has died: leased, due again later
            try:
                await process_event(w.factory, run.pump.registry, run.ctx, row_id)
            except SimulatedCrash:
                dead.set()
                raise

    try:
        async with asyncio.TaskGroup() as tg:  # a crash cancels a handler running beside it
            for row_id in claimed:
                tg.create_task(one(row_id))
    except BaseExceptionGroup as group:
        _, others = group.split(SimulatedCrash)
        if others is not None:
            raise others from None
        return "crashed"
    return None


async def a_settle_funds(run: Run) -> str | None:
    run.world.env.control("POST", "balance/available")


# (action, weight): bookings and payments dominate, as in life.
ACTIONS: tuple[tuple[Callable[[Run], Awaitable[None]], int], ...] = (
    (a_book, 14),
    (a_pay, 4),
    (a_finish_async, 2),
    (a_retry, 2),
    (a_cancel, 2),
    (a_refund, 4),
    (a_dashboard_refund, 1),
    (a_dispute, 2),
    (a_close_dispute, 2),
    (a_restrict, 1),
    (a_reenable, 1),
    (a_bank_payout, 1),
    (a_publish, 10),
    (a_cancel_session, 1),
    (a_cycle, 6),
    (a_webhooks, 10),
    (a_process_due, 3),
    (a_settle_funds, 1),
    (a_reverse, 1),
)
# Only with --concurrent (see FaultPlan.concurrent).
CONCURRENT_ACTIONS = (*ACTIONS, (a_concurrent, 6))
