"""Carrying out a refund intent: match or record it, call Stripe with no lock held, book it.

Used by refund requests (sessions/refunds.py) and by the refunds of a
cancelled session (sessions/cancellation.py). Each step that writes commits
before the next Stripe call, so the booking's row lock (which payments,
webhooks and other refunds of the booking wait on) is never held while
Stripe works.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from core.stripe_errors import (
    StripeAuthenticationError,
    StripeIdempotencyError,
    StripeOutcomeUnknown,
    StripeRefused,
)
from core.stripe_gateway import StripeGateway
from core.stripe_types import Refund as StripeRefund
from sessions import refund_intents as intents
from sessions.audit import Actor
from sessions.booking import get_booking
from sessions.models import Booking, Refund, RefundIntent
from sessions.refund_apply import Source, apply_refund
from sessions.refund_failures import FAILED_STATUSES

log = logging.getLogger(__name__)

NEVER_MADE = "no refund at Stripe for this request: it never reached Stripe"


@dataclass(frozen=True, slots=True)
class RefundAnswer:
    refund: Refund
    replayed: bool  # the outcome of an earlier identical request, not a new refund
    booked: bool = False  # booked by this call (not by a webhook or a concurrent replay)


async def carry_out(
    db: AsyncSession,
    booking_id: int,
    ask: intents.Ask,
    *,
    actor: Actor,
    authorize: Callable[[Booking], None],
    new_amount: Callable[[Booking], Awaitable[int | None]],
    gateway: StripeGateway,
    now: datetime,
) -> RefundAnswer | None:
    """The refund this request asks (or asked before). ``authorize`` runs under the
    booking's lock before anything about its intents is told; ``new_amount`` only for
    a new request (it raises when the refund is not allowed, None: nothing to refund).
    None when there was nothing to refund."""
    for _ in range(2):  # a stale intent of the booking is resolved first, at most once
        booking = await get_booking(db, booking_id, lock=True)
        authorize(booking)
        action, intent = await intents.match(db, booking, ask, now=now)
        if action == "resolve":
            assert intent is not None
            await db.commit()
            await resolve_stale(db, intent, gateway=gateway, now=now)
            await db.commit()
            continue
        if action == "done":
            assert intent is not None
            return RefundAnswer(await _refund_of(db, intent), replayed=True)
        if action == "failed":
            assert intent is not None
            raise Conflict(intent.error or "Stripe did not make this refund")
        if intent is None:
            amount = await new_amount(booking)
            if amount is None:
                return None
            intent = await intents.record(db, booking, ask, amount=amount, now=now)
        payment_intent = booking.payment_intent_id
        assert payment_intent is not None
        await db.commit()  # the intent is on disk before Stripe hears of it
        refund = await _send(
            db, intent, payment_intent, replay=action == "replay", gateway=gateway, now=now
        )
        row, booked = await _book(db, intent, refund, actor=actor, now=now)
        return RefundAnswer(row, replayed=action == "replay", booked=booked)
    raise intents.RefundInProgress("another refund of this booking is being made; retry shortly")


async def _send(
    db: AsyncSession,
    intent: RefundIntent,
    payment_intent: str,
    *,
    replay: bool,
    gateway: StripeGateway,
    now: datetime,
) -> StripeRefund:
    try:
        refund = await gateway.create_refund(
            payment_intent=payment_intent,
            amount=intent.amount,
            metadata=intents.intent_metadata(intent),
            reason="requested_by_customer",
            idempotency_key=intents.intent_key(intent),
        )
    except StripeIdempotencyError as exc:
        if replay:  # the first request with this key is still in flight at Stripe
            raise intents.RefundInProgress(
                "this refund is being made by an earlier request; retry shortly"
            ) from exc
        raise StripeOutcomeUnknown(f"refund not made: {exc.message}") from exc
    except StripeAuthenticationError as exc:
        # Our configuration, not the charge: the intent stays open for a retry.
        raise StripeOutcomeUnknown(f"refund not made: {exc.message}") from exc
    except StripeRefused as exc:
        message = f"Stripe refused the refund: {exc.message}"
        await intents.settle(db, intent.id, now=now, error=message)
        await db.commit()
        raise Conflict(message) from exc
    if refund.status in FAILED_STATUSES:
        # Nothing left the platform: nothing to book.
        message = f"Stripe could not make the refund ({refund.failure_reason or 'failed'})"
        await intents.settle(db, intent.id, now=now, refund_id=refund.id, error=message)
        await db.commit()
        raise Conflict(message)
    return refund


async def _book(
    db: AsyncSession, intent: RefundIntent, refund: StripeRefund, *, actor: Actor, now: datetime
) -> tuple[Refund, bool]:
    """Step 3: under the booking's lock, the refund booked (once) and the intent settled."""
    booking = await get_booking(db, intent.booking_id, lock=True)
    source: Source = "auto" if intent.source == "auto" else "api"
    row = await apply_refund(
        db, booking, refund, source=source, actor=actor, now=now, reason=intent.reason
    )
    await intents.settle(db, intent.id, now=now, refund_id=refund.id)
    if row is not None:
        return row, True
    # A webhook booked it between Stripe's answer and here (or a retry of ours did).
    return await _refund_of(db, intent, refund.id), False


async def _refund_of(
    db: AsyncSession, intent: RefundIntent, refund_id: str | None = None
) -> Refund:
    stripe_id = refund_id or intent.stripe_refund_id
    found = (
        await db.execute(select(Refund).where(Refund.stripe_refund_id == stripe_id))
    ).scalar_one_or_none()
    if found is None:
        # Stripe made it, but it was more than the booking still had (a dashboard
        # refund took the rest meanwhile): finance sees it in reconciliation.
        raise Conflict(f"refund {stripe_id} was made but not booked on this booking")
    return found


async def resolve_stale(
    db: AsyncSession, intent: RefundIntent, *, gateway: StripeGateway, now: datetime
) -> None:
    """Close an intent left open past ``STALE_AFTER`` by what Stripe has: its refund
    booked, or the intent failed as never made. Stripe is asked with no lock held;
    the caller commits."""
    booking = await get_booking(db, intent.booking_id)
    intent_id = intent.id
    await db.commit()
    found = None
    if booking.payment_intent_id is not None:
        found = await intents.find_at_stripe(gateway, intent, booking.payment_intent_id)
    locked = await get_booking(db, booking.id, lock=True)
    if found is None:
        log.warning("refund intent %s of booking %s was never made", intent_id, booking.id)
        await intents.settle(db, intent_id, now=now, error=NEVER_MADE)
    elif found.status in FAILED_STATUSES:
        await intents.settle(
            db, intent_id, now=now, refund_id=found.id, error=f"Stripe: refund {found.status}"
        )
    else:
        source: Source = "auto" if intent.source == "auto" else "api"
        await apply_refund(
            db, locked, found, source=source, actor=Actor.system(), now=now, reason=intent.reason
        )
        await intents.settle(db, intent_id, now=now, refund_id=found.id)
