"""Stripe's webhooks as they really arrive: late, more than once, out of order.

The emulator has no webhook URL, so it only records its events. Each delivery
round takes the events recorded since the last one, holds some back for a later
round, shuffles the rest, stores each in the inbox (its own transaction, like the
endpoint) and processes it (like the endpoint's background task), sometimes
"dies" between the two (then ``process_due`` owes it), and keeps some delivered
events to deliver again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from core.inbox import HandlerContext, event_row_id, process_due, process_event, store_event
from core.inbox_models import FAILED, PARKED, WebhookEvent
from core.stripe_types import StripeEvent
from payouts.errors import SimulatedCrash

from .faults import ChaosRegistry, FaultPlan
from .world import World


class EventPump:
    def __init__(self, world: World, plan: FaultPlan, ctx: HandlerContext) -> None:
        self.world, self.plan, self.ctx = world, plan, ctx
        self.registry = ChaosRegistry(plan)
        self.mark = 0
        self.inflight: list[dict[str, Any]] = []
        self.delivered = 0

    def collect(self) -> int:
        store = self.world.env.emulator.state
        with store.lock:
            events = list(store.events.values())[self.mark :]
            raw = [json.loads(json.dumps(e)) for e in events]
        self.mark += len(raw)
        # The endpoints subscribe to the types coachpay handles (Stripe's
        # enabled_events), so the others are never sent.
        wanted = self.registry.event_types
        self.inflight.extend(e for e in raw if e["type"] in wanted)
        return len(raw)

    async def deliver(self, *, everything: bool = False) -> int:
        """One delivery round; ``everything``: all held events, once each, no faults."""
        self.collect()
        rng, plan = self.plan.rng, self.plan
        if everything:
            batch, self.inflight = self.inflight, []
        else:
            batch, held = [], []
            for ev in self.inflight:
                (held if rng.random() < plan.p_late else batch).append(ev)
            plan.counts["webhook_late"] += len(held)
            self.inflight = held
        if len(batch) > 1:
            before = [e["id"] for e in batch]
            rng.shuffle(batch)
            if [e["id"] for e in batch] != before:
                plan.counts["webhook_reordered_rounds"] += 1
        jobs = []
        for raw in batch:
            if not everything and rng.random() < plan.p_duplicate:
                self.inflight.append(raw)  # Stripe will send it again
                plan.counts["webhook_duplicate"] += 1
            jobs.append((raw, everything or rng.random() >= plan.p_unprocessed))
        # Stripe delivers several at once (no ordering guarantee): some rounds
        # are handled by several workers concurrently, as by several replicas.
        width = rng.choice((1, 1, 2, 3)) if plan.concurrent and not everything else 1
        if width > 1 and len(jobs) > 1:
            plan.counts["webhook_concurrent_rounds"] += 1
        for i in range(0, len(jobs), width):
            await asyncio.gather(*(self._one(raw, process=p) for raw, p in jobs[i : i + width]))
        return len(batch)

    async def _one(self, raw: dict[str, Any], *, process: bool) -> None:
        event = StripeEvent.from_dict(raw)
        endpoint = "connect" if event.account else "platform"
        now = self.world.clock.now()
        async with self.world.factory() as db, db.begin():
            await store_event(db, event=event, endpoint=endpoint, now=now)
            row_id = await event_row_id(db, event.id)
        self.delivered += 1
        if not process:
            self.plan.counts["crash_between_store_and_process"] += 1
            return
        assert row_id is not None
        # A crash is counted where raised; the row stays owed to process_due.
        with contextlib.suppress(SimulatedCrash):
            await process_event(self.world.factory, self.registry, self.ctx, row_id)

    async def process_due(self, *, far: bool = False) -> int:
        now = self.world.clock.now()
        if far:  # everything owed, whatever its backoff says
            now += timedelta(days=365)
        try:
            # One at a time unless the plan is concurrent: handlers call the emulator,
            # and its seeded faults are drawn per request, so handlers racing each
            # other made a seed's run differ with the machine's load.
            return await process_due(
                self.world.factory,
                self.registry,
                self.ctx,
                now=now,
                concurrency=2 if self.plan.concurrent else 1,
            )
        except SimulatedCrash:
            return 0

    async def given_up(self) -> list[int]:
        """Events the inbox no longer retries by itself: parked, waiting for a person
        (core.inbox_failures), or failed with no next attempt (rows from before parking)."""
        async with self.world.factory() as db:
            rows = await db.execute(
                select(WebhookEvent.id).where(
                    or_(
                        WebhookEvent.status == PARKED,
                        and_(WebhookEvent.status == FAILED, WebhookEvent.next_attempt_at.is_(None)),
                    )
                )
            )
            return [int(r) for r in rows.scalars()]
