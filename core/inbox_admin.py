"""What an admin sees and does about webhook events that would not go through.

``failed_events`` lists parked events (or those still being retried), newest
first; ``replay`` puts a parked event back to be processed once more, once
whatever made it fail is fixed. Replaying is safe however often it happens:
handlers key every effect on Stripe ids, and an event is processed at most
once more per replay (claim, effects and mark in one transaction, see
core.inbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import record
from core.errors import Conflict, NotFound
from core.inbox_failures import redact
from core.inbox_models import FAILED, PARKED, PENDING, WebhookEvent, unpark_values

MAX_PAGE = 100
ERROR_EXCERPT = 300


class WebhookEventNotFound(NotFound):
    pass


class WebhookEventNotReplayable(Conflict):
    """Processed or ignored already: there is nothing to do again."""


class FailedState(StrEnum):
    PARKED = "parked"  # waiting for a person
    RETRYING = "retrying"  # failed, due again by the backoff


@dataclass(frozen=True, slots=True)
class FailedEvent:
    event_id: str
    type: str
    endpoint: str
    account: str | None
    status: str
    attempts: int
    handler_failures: int
    transient_failures: int
    replays: int
    last_error: str | None  # an excerpt, without secrets
    received_at: datetime
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    parked_at: datetime | None
    next_attempt_at: datetime | None
    row_id: int

    @property
    def cursor(self) -> tuple[datetime, int]:
        return self.last_attempt_at or self.received_at, self.row_id


def _excerpt(text: str | None) -> str | None:
    # Redacted when written already; again here for rows written before that.
    return None if text is None else redact(text, limit=ERROR_EXCERPT)


async def failed_events(
    db: AsyncSession,
    *,
    state: FailedState = FailedState.PARKED,
    limit: int = 50,
    before: tuple[datetime, int] | None = None,
) -> list[FailedEvent]:
    """Newest last attempt first; ``before``: the (last attempt, row id) cursor of the
    previous page's last item."""
    e = WebhookEvent
    status = PARKED if state is FailedState.PARKED else FAILED
    # Failed and parked rows always carry last_attempt_at (core.inbox_failures,
    # migration 0009): ordered as ix_webhook_events_failed is.
    when = e.last_attempt_at
    stmt = select(e).where(e.status == status)
    if before is not None:
        stmt = stmt.where(tuple_(when, e.id) < tuple_(before[0], before[1]))
    stmt = stmt.order_by(when.desc(), e.id.desc()).limit(min(max(limit, 1), MAX_PAGE + 1))
    rows = (await db.execute(stmt)).scalars().all()
    return [_view(r) for r in rows]


def _view(r: WebhookEvent) -> FailedEvent:
    return FailedEvent(
        event_id=r.stripe_event_id,
        type=r.type,
        endpoint=r.endpoint,
        account=r.account,
        status=r.status,
        attempts=r.attempts,
        handler_failures=r.handler_failures,
        transient_failures=r.transient_failures,
        replays=r.replays,
        last_error=_excerpt(r.last_error),
        received_at=r.received_at,
        first_attempt_at=r.first_attempt_at,
        last_attempt_at=r.last_attempt_at,
        parked_at=r.parked_at,
        next_attempt_at=r.next_attempt_at,
        row_id=r.id,
    )


async def parked_count(db: AsyncSession) -> int:
    stmt = select(func.count()).select_from(WebhookEvent).where(WebhookEvent.status == PARKED)
    return int(await db.scalar(stmt) or 0)


@dataclass(frozen=True, slots=True)
class Replay:
    event: FailedEvent
    replayed: bool  # False: it was queued already, nothing changed


async def replay(
    db: AsyncSession, *, event_id: str, now: datetime, actor_user_id: int | None
) -> Replay:
    """Put a parked event back to be processed (due now); a failed one still being
    retried is made due now. One that is pending already is left as it is (a second
    replay changes nothing); a processed or ignored one is refused. Audited."""
    by_id = WebhookEvent.stripe_event_id == event_id
    # SKIP LOCKED: a worker processing the event holds its row for as long as the
    # handler runs; the admin is told so at once rather than kept waiting.
    row = (
        await db.execute(select(WebhookEvent).where(by_id).with_for_update(skip_locked=True))
    ).scalar_one_or_none()
    if row is None:
        if (await db.execute(select(WebhookEvent.id).where(by_id))).first() is not None:
            raise WebhookEventNotReplayable(f"webhook event {event_id} is being processed now")
        raise WebhookEventNotFound(f"no webhook event {event_id}")
    if row.status == PENDING:
        return Replay(_view(row), replayed=False)
    if row.status not in (PARKED, FAILED):
        raise WebhookEventNotReplayable(f"webhook event {event_id} is {row.status} already")
    before = {"status": row.status, "attempts": row.attempts, "replays": row.replays}
    values = unpark_values(now) if row.status == PARKED else {"next_attempt_at": now}
    await db.execute(update(WebhookEvent).where(WebhookEvent.id == row.id).values(**values))
    await db.refresh(row)
    await record(
        db,
        actor_kind="user" if actor_user_id is not None else "system",
        actor_user_id=actor_user_id,
        action="webhook.replay",
        entity_type="webhook_event",
        entity_id=event_id,
        at=now,
        before=before,
        after={"status": row.status, "replays": row.replays},
    )
    return Replay(_view(row), replayed=True)
