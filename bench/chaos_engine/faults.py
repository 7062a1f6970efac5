"""What goes wrong in a run, decided by the run's seed, and the count of what did.

Three sources: the emulator (429, 500, timeouts, dropped connections before and
after Stripe executed the request, from its own seeded generator); simulated
process crashes (``SimulatedCrash``, a BaseException, so no ``except Exception``
on the way swallows it: the open database transaction rolls back while Stripe
may already have acted) before or after any Stripe call, before or after a
webhook handler, and at every named step of a payout; and the webhook
delivery itself (duplicates, reordering, late delivery: stripe_events.py).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.inbox import HandlerContext, HandlerRegistry, WebhookHandler
from core.stripe_types import StripeEvent
from payouts.errors import SimulatedCrash

EMULATOR_KINDS = ("429", "500", "timeout", "drop", "drop_after_commit", "timeout_after_commit")
PAYOUT_STEPS = (
    "during_reserve",
    "after_reserve",
    "before_transfer",
    "after_transfer",
    "during_settle",
    "before_commit",
)
# Gateway methods whose call may be wrapped (async generators are left alone).
_WRAPPED = ("create_", "retrieve_", "list_", "expire_", "find_", "update_")


@dataclass
class FaultPlan:
    rng: random.Random
    emulator: dict[str, Any]
    p_stripe_crash: float  # per Stripe call, before it and again after it
    p_handler_crash: float  # per webhook handler, before it and again after it
    p_payout_crash: float  # per named payout step
    p_duplicate: float  # a delivered webhook is delivered again later
    p_late: float  # an event is held back to a later delivery round
    p_unprocessed: float  # stored, then the process dies before acting on it
    # Two things at once (actions, webhook workers, payout workers): finds races,
    # but the interleaving is the scheduler's, so such a run does not replay exactly.
    concurrent: bool = False
    armed: bool = False  # crashes only while the run is in its chaos phase
    counts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def draw(cls, seed: int, *, concurrent: bool = False) -> FaultPlan:
        rng = random.Random(f"faults:{seed}")
        total = rng.choice((0.0, 0.1, 0.2, 0.3, 0.4))
        weights = [rng.random() for _ in EMULATOR_KINDS]
        scale = total / sum(weights)
        emulator: dict[str, Any] = {
            f"rate_{k}": round(w * scale, 4) for k, w in zip(EMULATOR_KINDS, weights, strict=True)
        }
        emulator.update(seed=seed, timeout_seconds=0.01)
        return cls(
            rng=rng,
            emulator=emulator,
            p_stripe_crash=rng.choice((0.0, 0.02, 0.05)),
            p_handler_crash=rng.choice((0.0, 0.03, 0.08)),
            p_payout_crash=rng.choice((0.0, 0.05, 0.1)),
            p_duplicate=rng.choice((0.1, 0.3)),
            p_late=rng.choice((0.1, 0.3, 0.5)),
            p_unprocessed=rng.choice((0.0, 0.1)),
            concurrent=concurrent,
        )

    def crash(self, p: float, kind: str) -> None:
        if self.armed and p and self.rng.random() < p:
            self.counts[kind] += 1
            raise SimulatedCrash(kind)

    def payout_hook(self, step: str) -> None:
        self.crash(self.p_payout_crash, f"crash_payout_{step}")

    def add_emulator_stats(self, stats: dict[str, Any]) -> None:
        for kind, n in (stats.get("faults") or {}).items():
            if n:
                self.counts[f"stripe_{kind}"] += int(n)


class ChaosGateway:
    """The real gateway, with a possible crash just before or just after each Stripe call."""

    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        self._inner, self._plan = inner, plan

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not name.startswith(_WRAPPED):
            return attr
        plan = self._plan

        async def call(*args: Any, **kwargs: Any) -> Any:
            plan.crash(plan.p_stripe_crash, "crash_before_stripe_call")
            result = await attr(*args, **kwargs)
            # Stripe has acted; our transaction has not committed.
            plan.crash(plan.p_stripe_crash, "crash_after_stripe_call")
            return result

        return call


def _crashing(handler: WebhookHandler, plan: FaultPlan) -> WebhookHandler:
    async def wrapped(db: Any, event: StripeEvent, ctx: HandlerContext) -> None:
        plan.crash(plan.p_handler_crash, "crash_before_handler")
        await handler(db, event, ctx)
        plan.crash(plan.p_handler_crash, "crash_after_handler")

    return wrapped


class ChaosRegistry(HandlerRegistry):
    """Every package's handlers, each wrapped in crash points (what api.runtime registers)."""

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__()
        self._plan = plan
        from connect import webhooks as connect_webhooks
        from payouts import webhooks as payouts_webhooks
        from sessions import webhooks as sessions_webhooks

        for package in (connect_webhooks, sessions_webhooks, payouts_webhooks):
            package.register_handlers(self)

    def register(self, event_type: str, handler: WebhookHandler) -> None:
        super().register(event_type, _crashing(handler, self._plan))


Step = Callable[[], Awaitable[str]]
