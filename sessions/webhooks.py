"""Stripe webhook handlers of the sessions package.

Every handler re-reads the object from Stripe where the order of events
matters and acts on Stripe's current state, not on the event's snapshot:
an ``expired`` after ``completed`` finds the session complete and leaves the
paid booking alone; a ``completed`` after ``expired`` (a booking cancelled
meanwhile) refunds the payment automatically. All effects are keyed on
Stripe ids, so a second delivery changes nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_types import PaymentIntent, Refund, StripeEvent
from sessions.audit import Actor, transition
from sessions.booking import get_booking
from sessions.catalog import lock_session
from sessions.disputes import Dispute, close_dispute, find_booking_id, open_dispute
from sessions.models import Booking, BookingStatus
from sessions.payments import sync_payment
from sessions.refunds import sync_refund

log = logging.getLogger(__name__)


async def _booking_for_checkout(db: AsyncSession, obj: dict[str, object]) -> int | None:
    found = (
        await db.execute(select(Booking.id).where(Booking.checkout_session_id == obj.get("id")))
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    meta = obj.get("metadata")
    raw = meta.get("booking_id") if isinstance(meta, dict) else None
    if not (isinstance(raw, str) and raw.isdigit()):
        return None
    # A Checkout Session Stripe made while our booking transaction rolled back
    # (the answer was lost) names a booking that never existed: nothing to do.
    exists = (await db.execute(select(Booking.id).where(Booking.id == int(raw)))).first()
    if exists is None:
        log.warning(
            "checkout session %s names booking %s, which was never saved", obj.get("id"), raw
        )
        return None
    return int(raw)


async def on_checkout_paid(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """checkout.session.completed / async_payment_succeeded."""
    cs = await ctx.gateway.retrieve_checkout_session(str(event.data_object["id"]))
    if cs.payment_status != "paid" or cs.payment_intent_id is None:
        return  # async payment still processing; its own event follows
    await sync_payment(
        db,
        payment_intent_id=cs.payment_intent_id,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
        cause=f"{event.type}:{event.id}",
    )


async def on_checkout_expired(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    booking_id = await _booking_for_checkout(db, event.data_object)
    if booking_id is None:
        return
    # Session lock first, then the booking's: the order of book and
    # record_payment (which this may call), so the two cannot deadlock.
    await lock_session(db, (await get_booking(db, booking_id)).coaching_session_id)
    booking = await get_booking(db, booking_id, lock=True)
    if (
        booking.status != BookingStatus.PENDING
        or booking.checkout_session_id != event.data_object.get("id")
    ):
        return  # paid, cancelled, or an older attempt's session
    cs = await ctx.gateway.retrieve_checkout_session(str(event.data_object["id"]))
    if cs.status != "expired":
        if cs.payment_status == "paid" and cs.payment_intent_id:
            await sync_payment(
                db,
                payment_intent_id=cs.payment_intent_id,
                gateway=ctx.gateway,
                clock=ctx.clock,
                settings=ctx.settings,
                cause=f"{event.type}:{event.id}",
            )
        return
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
    booking_id = await _booking_for_checkout(db, event.data_object)
    if booking_id is None:
        return
    cs = await ctx.gateway.retrieve_checkout_session(str(event.data_object["id"]))
    if cs.payment_status == "paid":
        return
    booking = await get_booking(db, booking_id)
    if booking.checkout_session_id != cs.id:
        return
    await _fail(db, booking_id, attempt=None, event=event, ctx=ctx, message="async payment failed")


async def on_payment_failed(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """payment_intent.payment_failed (the checkout may stay open for another card)."""
    snapshot = PaymentIntent.from_dict(event.data_object)
    raw = snapshot.metadata.get("booking_id", "")
    if not raw.isdigit():
        return
    pi = await ctx.gateway.retrieve_payment_intent(snapshot.id)
    if pi.status == "succeeded":
        return
    await _fail(
        db,
        int(raw),
        attempt=pi.metadata.get("attempt"),
        event=event,
        ctx=ctx,
        message=pi.last_payment_error_message,
    )


async def _ensure_payment(
    db: AsyncSession, pi_id: str | None, ctx: HandlerContext, cause: str
) -> int | None:
    """The booking paid by ``pi_id``, recording the payment first if its event is late."""
    booking_id = await find_booking_id(db, pi_id)
    if booking_id is None and pi_id is not None:
        await sync_payment(
            db,
            payment_intent_id=pi_id,
            gateway=ctx.gateway,
            clock=ctx.clock,
            settings=ctx.settings,
            cause=cause,
        )
        booking_id = await find_booking_id(db, pi_id)
    return booking_id


async def on_refund(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """refund.created / refund.updated: a refund made here or in Stripe's dashboard."""
    refund = Refund.from_dict(event.data_object)
    if await _ensure_payment(db, refund.payment_intent_id, ctx, f"{event.type}:{event.id}"):
        await sync_refund(db, refund, clock=ctx.clock, cause=f"{event.type}:{event.id}")


async def on_charge_refunded(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """charge.refunded: every refund of the charge is booked like refund.created.

    Stripe no longer embeds the refunds list in this event (since 2022-11-15),
    so they are listed from Stripe: a dashboard refund whose refund.created is
    lost or late is still booked (each one once, keyed on its refund id).
    """
    obj = event.data_object
    pi_id = obj.get("payment_intent")
    cause = f"{event.type}:{event.id}"
    if not await _ensure_payment(db, str(pi_id) if pi_id else None, ctx, cause):
        return
    charge_id = obj.get("id")
    refunds: list[Refund] = []
    if isinstance(charge_id, str) and charge_id:
        cursor: str | None = None
        while True:
            page = await ctx.gateway.list_refunds(charge=charge_id, starting_after=cursor)
            refunds.extend(page.data)
            if not page.has_more or page.last_id is None:
                break
            cursor = page.last_id
    else:
        embedded = obj.get("refunds")
        data = embedded.get("data", []) if isinstance(embedded, dict) else []
        refunds = [Refund.from_dict(raw) for raw in data]
    for refund in reversed(refunds):  # oldest first, as they were made
        await sync_refund(db, refund, clock=ctx.clock, cause=cause)


async def on_dispute(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """charge.dispute.created / funds_withdrawn / closed (all carry the dispute)."""
    dispute = Dispute.from_dict(event.data_object)
    booking_id = await _ensure_payment(
        db, dispute.payment_intent_id, ctx, f"{event.type}:{event.id}"
    )
    if booking_id is None:
        log.warning("dispute %s is for no booking of ours", dispute.id)
        return
    now = ctx.clock.now()
    if event.type == "charge.dispute.closed":
        await close_dispute(db, booking_id, dispute, now=now)
    else:
        await open_dispute(db, booking_id, dispute, now=now)


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
