"""The Stripe webhook inbox: store every event once, then act on it exactly once.

Receiving and processing are split: the endpoint verifies and stores the
event (one INSERT ... ON CONFLICT DO NOTHING on the event id) and answers
Stripe at once; processing claims the row (FOR UPDATE SKIP LOCKED) and runs
the handlers in the SAME transaction that marks the row processed, so an
effect and its mark commit together or not at all. A failure rolls the
effect back and schedules a retry with backoff; ``process_due`` (a job) picks
up what is owed, so a crash between receive and process loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.inbox_models import FAILED, IGNORED, PENDING, PROCESSED, WebhookEvent
from core.stripe_types import StripeEvent

if TYPE_CHECKING:
    from core.settings import Settings
    from core.stripe_gateway import StripeGateway

__all__ = [
    "HandlerContext",
    "HandlerRegistry",
    "WebhookEvent",
    "WebhookHandler",
    "process_due",
    "process_event",
    "store_event",
]

log = logging.getLogger(__name__)

Endpoint = Literal["platform", "connect"]
Outcome = Literal["processed", "failed", "ignored", "skipped"]

# The retry job is a safety net for the in-request background processing:
# a new event becomes due only after this grace period.
FIRST_RETRY_DELAY = timedelta(seconds=60)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=6)
# After this many failures the event waits for a person (next_attempt_at NULL).
MAX_ATTEMPTS = 15
_MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class HandlerContext:
    gateway: StripeGateway
    clock: Clock
    settings: Settings


WebhookHandler = Callable[[AsyncSession, StripeEvent, HandlerContext], Awaitable[None]]


class HandlerRegistry:
    """Event type -> handlers, run in registration order in one transaction.

    Handlers must be idempotent (an event may arrive twice under two ids,
    or out of order) and must not commit: the inbox commits.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[WebhookHandler]] = {}

    def register(self, event_type: str, handler: WebhookHandler) -> None:
        handlers = self._handlers.setdefault(event_type, [])
        if handler not in handlers:
            handlers.append(handler)

    def handlers_for(self, event_type: str) -> tuple[WebhookHandler, ...]:
        return tuple(self._handlers.get(event_type, ()))

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._handlers

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._handlers)


async def store_event(
    db: AsyncSession, *, event: StripeEvent, endpoint: Endpoint, now: datetime
) -> int | None:
    """Store ``event`` unless its id is already there: the new row's id, ``None`` for a repeat."""
    stmt = (
        insert(WebhookEvent)
        .values(
            stripe_event_id=event.id,
            endpoint=endpoint,
            type=event.type,
            account=event.account,
            livemode=event.livemode,
            payload=event.raw,
            received_at=now,
            status=PENDING,
            attempts=0,
            next_attempt_at=now + FIRST_RETRY_DELAY,
        )
        .on_conflict_do_nothing(index_elements=["stripe_event_id"])
        .returning(WebhookEvent.id)
    )
    new_id: int | None = (await db.execute(stmt)).scalar_one_or_none()
    return new_id


async def event_row_id(db: AsyncSession, stripe_event_id: str) -> int | None:
    stmt = select(WebhookEvent.id).where(WebhookEvent.stripe_event_id == stripe_event_id)
    return (await db.execute(stmt)).scalar_one_or_none()


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 6 h."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


async def process_event(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    event_row_id: int,
) -> Outcome:
    """Run the handlers of one stored event; 'skipped' when it is done or being done elsewhere."""
    error: BaseException | None = None
    try:
        async with factory() as db, db.begin():
            row = (
                await db.execute(
                    select(WebhookEvent)
                    .where(
                        WebhookEvent.id == event_row_id,
                        WebhookEvent.status.in_((PENDING, FAILED)),
                    )
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if row is None:
                return "skipped"
            handlers = registry.handlers_for(row.type)
            event = StripeEvent.from_dict(row.payload)
            for handler in handlers:
                await handler(db, event, ctx)
            row.status = PROCESSED if handlers else IGNORED
            row.processed_at = ctx.clock.now()
            row.attempts += 1
            row.last_error = None
            row.next_attempt_at = None
            return "processed" if handlers else "ignored"
    except Exception as exc:
        # The transaction (effects and claim) is rolled back by now.
        error = exc
    await _mark_failed(factory, event_row_id, error, now=ctx.clock.now())
    return "failed"


async def _mark_failed(
    factory: async_sessionmaker[AsyncSession],
    event_row_id: int,
    error: BaseException,
    *,
    now: datetime,
) -> None:
    message = f"{type(error).__name__}: {error}"[:_MAX_ERROR_LENGTH]
    log.warning("webhook event %s failed: %s", event_row_id, message, exc_info=error)
    async with factory() as db, db.begin():
        row = (
            await db.execute(
                select(WebhookEvent)
                .where(
                    WebhookEvent.id == event_row_id,
                    WebhookEvent.status.in_((PENDING, FAILED)),
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if row is None:  # processed meanwhile by another worker
            return
        row.attempts += 1
        row.status = FAILED
        row.last_error = message
        row.next_attempt_at = now + backoff(row.attempts) if row.attempts < MAX_ATTEMPTS else None
        if row.next_attempt_at is None:
            log.error("webhook event %s gave up after %s attempts", event_row_id, row.attempts)


async def process_due(
    factory: async_sessionmaker[AsyncSession],
    registry: HandlerRegistry,
    ctx: HandlerContext,
    *,
    now: datetime,
    batch: int = 100,
) -> int:
    """Process up to ``batch`` events owed work (pending or failed, due by ``now``).

    Returns how many were processed or ignored. Safe in many workers: each
    event is claimed with SKIP LOCKED, and a claimed one is skipped here.
    """
    async with factory() as db:
        ids = (
            (
                await db.execute(
                    select(WebhookEvent.id)
                    .where(
                        WebhookEvent.status.in_((PENDING, FAILED)),
                        WebhookEvent.next_attempt_at <= now,
                    )
                    .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
    done = 0
    for row_id in ids:
        if await process_event(factory, registry, ctx, row_id) in ("processed", "ignored"):
            done += 1
    return done


async def reschedule(db: AsyncSession, event_row_id: int, *, at: datetime) -> None:
    """Make a failed or given-up event due again at ``at`` (an operator's retry)."""
    await db.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_row_id, WebhookEvent.status.in_((PENDING, FAILED)))
        .values(next_attempt_at=at)
    )
