"""Stripe webhook handlers of the sessions package.

Trust Stripe, not the message: a handler takes only the object's id from the
event, re-reads the object from Stripe (core/stripe_reread.py) and books what
Stripe answers; an id Stripe does not know books nothing. Refunds and
disputes, which must also belong to the booking they are booked against, are
in sessions/refund_webhooks.py. Re-reading also makes the order of events
irrelevant: an ``expired`` after ``completed`` finds the session complete and
leaves the paid booking alone; a ``completed`` after ``expired`` (a booking cancelled meanwhile)
refunds the payment automatically. All effects are keyed on Stripe ids, so a
second delivery changes nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_reread import object_id, reread
from core.stripe_types import CheckoutSession, PaymentIntent, StripeEvent
from sessions.audit import Actor, transition
from sessions.booking import get_booking
from sessions.catalog import lock_session
from sessions.models import Booking, BookingStatus
from sessions.payments import book_intent, booking_id_of, sync_payment
from sessions.refund_webhooks import on_charge_refunded, on_dispute, on_refund

log = logging.getLogger(__name__)

# A PaymentIntent in these states has no payment under way: the attempt failed.
_FAILED_INTENT = ("requires_payment_method", "canceled")


async def _booking_exists(db: AsyncSession, booking_id: int) -> bool:
    return (
        await db.execute(select(Booking.id).where(Booking.id == booking_id))
    ).first() is not None


async def _booking_for_checkout(db: AsyncSession, cs: CheckoutSession) -> int | None:
    found = (
        await db.execute(select(Booking.id).where(Booking.checkout_session_id == cs.id))
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    raw = cs.metadata.get("booking_id", "")
    if not raw.isdigit():
        return None
    # A Checkout Session Stripe made while our booking transaction rolled back
    # (the answer was lost) names a booking that never existed: nothing to do.
    if not await _booking_exists(db, int(raw)):
        log.warning("checkout session %s names booking %s, which was never saved", cs.id, raw)
        return None
    return int(raw)


async def _checkout_session(event: StripeEvent, ctx: HandlerContext) -> CheckoutSession | None:
    cs_id = object_id(event, "cs_")
    if cs_id is None:
        return None
    return await reread(event, "checkout session", cs_id, ctx.gateway.retrieve_checkout_session)


async def _sync_payment(
    db: AsyncSession, pi_id: str, event: StripeEvent, ctx: HandlerContext
) -> None:
    # sync_payment re-reads the PaymentIntent and books Stripe's amount,
    # currency and fee; it takes the session lock, then the booking's, itself.
    await sync_payment(
        db,
        payment_intent_id=pi_id,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
        cause=f"{event.type}:{event.id}",
    )


async def _vouched_intent(
    db: AsyncSession, event: StripeEvent, ctx: HandlerContext
) -> PaymentIntent | None:
    """The PaymentIntent the event's body names, read from Stripe, when Stripe's copy
    vouches for the event's Checkout Session; None sends the caller the long way.

    Only the two ids come from the body. The booking, amount, currency, status and
    fee come from Stripe's PaymentIntent (its metadata was stamped by us at
    checkout: booking and attempt), and the booking it names must be on the very
    Checkout Session the event is about, at the attempt the intent was made for:
    each attempt has one Checkout Session (its key is the booking's and the
    attempt's) and each Checkout Session one PaymentIntent, so a body pairing a
    session with another booking's or another attempt's intent fails here.
    """
    pi_id, cs_id = event.data_object.get("payment_intent"), event.data_object.get("id")
    if isinstance(pi_id, dict):  # an expanded field
        pi_id = pi_id.get("id")
    if not (isinstance(pi_id, str) and pi_id.startswith("pi_") and isinstance(cs_id, str)):
        return None
    pi = await reread(event, "payment intent", pi_id, ctx.gateway.retrieve_payment_intent)
    if pi is None or pi.status != "succeeded":
        return None  # the session itself may name another intent: the long way decides
    booking_id = booking_id_of(pi.metadata)
    if booking_id is None:
        return None
    row = (
        await db.execute(
            select(Booking.checkout_session_id, Booking.attempt).where(Booking.id == booking_id)
        )
    ).first()
    if row is None or row.checkout_session_id != cs_id:
        return None
    if pi.metadata.get("attempt") != str(row.attempt):
        return None
    return pi


async def on_checkout_paid(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """checkout.session.completed / async_payment_succeeded.

    The common case costs one Stripe call: the PaymentIntent the body names, read
    with its charge and balance transaction. Whatever does not add up reads the
    Checkout Session first, as every other handler does. Both end in
    ``book_intent``: the payment rules are the same ones either way.
    """
    pi = await _vouched_intent(db, event, ctx)
    if pi is not None:
        await book_intent(
            db,
            pi=pi,
            gateway=ctx.gateway,
            clock=ctx.clock,
            settings=ctx.settings,
            cause=f"{event.type}:{event.id}",
        )
        return
    cs = await _checkout_session(event, ctx)
    if cs is None or cs.payment_status != "paid" or cs.payment_intent_id is None:
        return  # unknown to Stripe, or an async payment still processing (its own event follows)
    await _sync_payment(db, cs.payment_intent_id, event, ctx)


async def on_checkout_expired(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    # Stripe is asked before any lock is taken: every booking of the session
    # waits on the session's row lock, and must not wait on Stripe.
    cs = await _checkout_session(event, ctx)
    if cs is None:
        return
    if cs.status != "expired":
        if cs.payment_status == "paid" and cs.payment_intent_id:
            await _sync_payment(db, cs.payment_intent_id, event, ctx)
        return
    booking_id = await _booking_for_checkout(db, cs)
    if booking_id is None:
        return
    # Session lock first, then the booking's: the order of book and
    # record_payment, so the three cannot deadlock. An expired session stays
    # expired, so only our side is re-checked under the locks.
    await lock_session(db, (await get_booking(db, booking_id)).coaching_session_id)
    booking = await get_booking(db, booking_id, lock=True)
    if booking.status != BookingStatus.PENDING or booking.checkout_session_id != cs.id:
        return  # paid, cancelled, or an older attempt's session
    await transition(
        db,
        booking,
        BookingStatus.CANCELLED.value,
        actor=Actor.stripe(),
        cause=f"checkout.session.expired:{event.id}",
        at=ctx.clock.now(),
        detail={"checkout_session": cs.id},
    )


async def _fail(
    db: AsyncSession,
    booking_id: int,
    *,
    attempt: str | None,
    event: StripeEvent,
    ctx: HandlerContext,
    message: str | None,
) -> None:
    booking = await get_booking(db, booking_id, lock=True)
    if booking.status != BookingStatus.PENDING:
        return
    if attempt is not None and attempt != str(booking.attempt):
        return  # an older attempt failing says nothing about the current one
    await transition(
        db,
        booking,
        BookingStatus.FAILED.value,
        actor=Actor.stripe(),
        cause=f"{event.type}:{event.id}",
        at=ctx.clock.now(),
        detail={"message": message},
    )


async def on_checkout_failed(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """checkout.session.async_payment_failed."""
    cs = await _checkout_session(event, ctx)
    if cs is None or cs.payment_status == "paid" or cs.payment_intent_id is None:
        return
    # "unpaid" is also what a payment still processing shows: only the
    # PaymentIntent tells a failure apart.
    pi = await ctx.gateway.retrieve_payment_intent(cs.payment_intent_id)
    if pi.status not in _FAILED_INTENT:
        return
    booking_id = await _booking_for_checkout(db, cs)
    if booking_id is None or (await get_booking(db, booking_id)).checkout_session_id != cs.id:
        return
    message = pi.last_payment_error_message or "async payment failed"
    await _fail(db, booking_id, attempt=None, event=event, ctx=ctx, message=message)


async def on_payment_failed(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """payment_intent.payment_failed (the checkout may stay open for another card)."""
    pi_id = object_id(event, "pi_")
    if pi_id is None:
        return
    pi = await reread(event, "payment intent", pi_id, ctx.gateway.retrieve_payment_intent)
    if pi is None or pi.status not in _FAILED_INTENT:
        return
    # The booking and attempt are the ones we stamped on the intent at Stripe,
    # never the event's copy of its metadata.
    raw = pi.metadata.get("booking_id", "")
    if not raw.isdigit() or not await _booking_exists(db, int(raw)):
        return
    await _fail(
        db,
        int(raw),
        attempt=pi.metadata.get("attempt"),
        event=event,
        ctx=ctx,
        message=pi.last_payment_error_message,
    )


def register_handlers(registry: HandlerRegistry) -> None:
    """Register this package's handlers: `registry.register("event.type", handler)`."""
    registry.register("checkout.session.completed", on_checkout_paid)
    registry.register("checkout.session.async_payment_succeeded", on_checkout_paid)
    registry.register("checkout.session.expired", on_checkout_expired)
    registry.register("checkout.session.async_payment_failed", on_checkout_failed)
    registry.register("payment_intent.payment_failed", on_payment_failed)
    registry.register("refund.created", on_refund)
    registry.register("refund.updated", on_refund)
    registry.register("refund.failed", on_refund)
    registry.register("charge.refund.updated", on_refund)
    registry.register("charge.refunded", on_charge_refunded)
    registry.register("charge.dispute.created", on_dispute)
    # An inquiry escalated to a chargeback: the funds leave now (opened once per dispute).
    registry.register("charge.dispute.funds_withdrawn", on_dispute)
    registry.register("charge.dispute.closed", on_dispute)
