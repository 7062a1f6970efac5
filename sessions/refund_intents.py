"""Refund intents: which request is "the same request", and what a retry of it gets.

A refund request becomes a ``refund_intents`` row, committed before Stripe is
called; its Stripe idempotency key is ``coachpay:refund-intent:<id>``. The
rules (one place; sessions/refunds.py applies them):

- With an ``Idempotency-Key``: the same key on the same booking is the same
  request. Its body (amount, reason) and its sender must match the first
  (else ``IdempotencyKeyReused``, 422); it gets the first one's outcome
  (the refund, or the same refusal), or replays it while it is open.
- Without one: the same booking, sender, asked amount (``None``: "all that
  remains") and reason, within ``COACHPAY_REFUND_REPLAY_WINDOW_MINUTES`` (60)
  of the first, is the same request, unless the first was refused (a refusal moved no money; asking
  again is a new attempt). To refund the same amount twice on purpose
  within the window, send a distinct ``Idempotency-Key`` each time.
- At most one intent per booking is open (a unique index). Another request
  meanwhile is ``RefundInProgress`` (409), until the open one is older than
  ``COACHPAY_REFUND_INTENT_STALE_MINUTES`` (5): then it is resolved first, by
  looking for its refund at Stripe (metadata ``refund_intent``), never by
  sending it again. Found: it
  is booked; not found: it is closed as never made. So a key is replayed
  only while young, far inside Stripe's 24 h idempotency window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, InvalidInput
from core.settings import Settings
from core.stripe_gateway import StripeGateway, idempotency_key
from core.stripe_types import Refund as StripeRefund
from sessions.models import Booking, IntentStatus, Refund, RefundIntent
from sessions.refund_failures import FAILED_STATUSES

# The defaults of COACHPAY_REFUND_REPLAY_WINDOW_MINUTES and
# COACHPAY_REFUND_INTENT_STALE_MINUTES (the latter longer than any one Stripe call
# with its retries: core.settings checks it); an Ask carries the values in use.
REPLAY_WINDOW = timedelta(minutes=Settings.model_fields["refund_replay_window_minutes"].default)
STALE_AFTER = timedelta(minutes=Settings.model_fields["refund_intent_stale_minutes"].default)
INTENT_METADATA = "refund_intent"
_MAX_ERROR = 500

Action = Literal["new", "replay", "done", "failed", "resolve"]


class RefundInProgress(Conflict):
    """Another refund of this booking is being made; retry shortly."""


class IdempotencyKeyReused(InvalidInput):
    """The client's Idempotency-Key was first used with another body or by someone else."""


@dataclass(frozen=True, slots=True)
class Ask:
    """What a request asks, as the intent records it."""

    source: str  # api / auto
    requested: int | None  # None: all that remains
    reason: str | None
    actor_user_id: int | None
    client_key: str | None
    replay_window: timedelta = REPLAY_WINDOW
    stale_after: timedelta = STALE_AFTER

    def with_settings(self, settings: Settings) -> Ask:
        return replace(
            self,
            replay_window=timedelta(minutes=settings.refund_replay_window_minutes),
            stale_after=timedelta(minutes=settings.refund_intent_stale_minutes),
        )


def intent_key(intent: RefundIntent) -> str:
    return idempotency_key("refund-intent", intent.id)


def intent_metadata(intent: RefundIntent) -> dict[str, str]:
    meta = {
        "booking_id": str(intent.booking_id),
        "source": intent.source if intent.source == "api" else "session_cancelled",
        INTENT_METADATA: str(intent.id),
    }
    if intent.actor_user_id is not None:
        meta["requested_by"] = str(intent.actor_user_id)
    return meta


def _same(intent: RefundIntent, ask: Ask) -> bool:
    return (intent.actor_user_id, intent.requested_amount, intent.reason, intent.source) == (
        ask.actor_user_id,
        ask.requested,
        ask.reason,
        ask.source,
    )


def _open_action(intent: RefundIntent, ask: Ask, now: datetime) -> Action:
    return "resolve" if now - intent.created_at >= ask.stale_after else "replay"


async def open_intent(db: AsyncSession, booking_id: int) -> RefundIntent | None:
    stmt = select(RefundIntent).where(
        RefundIntent.booking_id == booking_id, RefundIntent.status == IntentStatus.OPEN.value
    )
    return (await db.execute(stmt)).scalar_one_or_none()


async def match(
    db: AsyncSession, booking: Booking, ask: Ask, *, now: datetime
) -> tuple[Action, RefundIntent | None]:
    """The intent this request is a retry of, and what to do with it; ("new", None) when
    it is a new request and no other intent is open. The caller holds the booking's lock."""
    if ask.client_key is not None:
        stmt = select(RefundIntent).where(
            RefundIntent.booking_id == booking.id, RefundIntent.client_key == ask.client_key
        )
        keyed = (await db.execute(stmt)).scalar_one_or_none()
        if keyed is not None:
            if not _same(keyed, ask):
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another request (amount, reason or "
                    "sender); use a new key for a new refund",
                    field="Idempotency-Key",
                )
            if keyed.status == IntentStatus.OPEN:
                return _open_action(keyed, ask, now), keyed
            return ("done" if keyed.status == IntentStatus.SUCCEEDED else "failed"), keyed
    elif ask.source == "auto":
        # The job's "refund what remains": the booking's state says what is left once a
        # refund is booked, so only an open intent of its own is a retry of it.
        own = await open_intent(db, booking.id)
        if own is not None and own.source == "auto":
            return _open_action(own, ask, now), own
    else:
        stmt = (
            select(RefundIntent)
            .where(
                RefundIntent.booking_id == booking.id,
                RefundIntent.client_key.is_(None),
                RefundIntent.source == ask.source,
                RefundIntent.actor_user_id.is_(None)
                if ask.actor_user_id is None
                else RefundIntent.actor_user_id == ask.actor_user_id,
                RefundIntent.status != IntentStatus.FAILED.value,
                RefundIntent.created_at >= now - ask.replay_window,
            )
            .order_by(RefundIntent.id.desc())
        )
        for prior in (await db.execute(stmt)).scalars().all():
            if not _same(prior, ask):
                continue
            if prior.status == IntentStatus.OPEN:
                return _open_action(prior, ask, now), prior
            if not await _came_back(db, prior):
                return "done", prior
    other = await open_intent(db, booking.id)
    if other is None:
        return "new", None
    if _open_action(other, ask, now) == "resolve":
        return "resolve", other
    raise RefundInProgress(
        f"a refund of {other.amount} of this booking is being made; retry shortly"
    )


async def _came_back(db: AsyncSession, intent: RefundIntent) -> bool:
    """Its refund failed at Stripe since: the money is back, so asking again is new."""
    status = (
        await db.execute(
            select(Refund.status).where(Refund.stripe_refund_id == intent.stripe_refund_id)
        )
    ).scalar_one_or_none()
    return status in FAILED_STATUSES


async def record(
    db: AsyncSession, booking: Booking, ask: Ask, *, amount: int, now: datetime
) -> RefundIntent:
    intent = RefundIntent(
        booking_id=booking.id,
        source=ask.source,
        requested_amount=ask.requested,
        amount=amount,
        currency=booking.currency,
        reason=ask.reason,
        actor_user_id=ask.actor_user_id,
        client_key=ask.client_key,
        status=IntentStatus.OPEN.value,
        created_at=now,
    )
    db.add(intent)
    await db.flush()
    return intent


async def settle(
    db: AsyncSession,
    intent_id: int,
    *,
    now: datetime,
    refund_id: str | None = None,
    error: str | None = None,
) -> None:
    """Close an open intent: succeeded with its Stripe refund, or failed with the reason.
    A closed one stays as it is (a webhook and the request may both get here)."""
    intent = await db.get(RefundIntent, intent_id, with_for_update=True, populate_existing=True)
    if intent is None or intent.status != IntentStatus.OPEN:
        return
    intent.status = (IntentStatus.FAILED if error is not None else IntentStatus.SUCCEEDED).value
    intent.stripe_refund_id = refund_id
    intent.error = error[:_MAX_ERROR] if error is not None else None
    intent.settled_at = now
    await db.flush()


async def settle_from_stripe(
    db: AsyncSession, refund: StripeRefund, *, failed: bool, now: datetime
) -> None:
    """A refund seen from Stripe that names one of our intents settles it."""
    raw = refund.metadata.get(INTENT_METADATA, "")
    if raw.isdigit():
        error = f"Stripe: refund {refund.status}" if failed else None
        await settle(db, int(raw), now=now, refund_id=refund.id, error=error)


async def find_at_stripe(
    gateway: StripeGateway, intent: RefundIntent, payment_intent_id: str
) -> StripeRefund | None:
    """The refund Stripe made for this intent, if any (listing the payment's refunds)."""
    cursor: str | None = None
    while True:
        page = await gateway.list_refunds(payment_intent=payment_intent_id, starting_after=cursor)
        for refund in page.data:
            if refund.metadata.get(INTENT_METADATA) == str(intent.id):
                return refund
        if not page.has_more or page.last_id is None:
            return None
        cursor = page.last_id
