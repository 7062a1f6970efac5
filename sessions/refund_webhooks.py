"""Stripe webhook handlers for the money that comes back: refunds and disputes.

Only the object's id is taken from the event. The refund (or dispute) is
re-read from Stripe with its charge expanded, and booked only when Stripe's
object belongs to the booking's own payment and charge, is in its currency,
and is not larger than the charge Stripe holds. The booking itself then caps
a refund at what is left to refund (sessions/refunds.py), a dispute at the
booking's amount (sessions/disputes.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from core.stripe_reread import object_id, reread
from core.stripe_types import Charge, Refund, StripeEvent
from sessions.booking import get_booking
from sessions.disputes import close_dispute, dispute_misfit, find_booking_id, open_dispute
from sessions.models import Booking
from sessions.payments import sync_payment
from sessions.refunds import sync_refund

log = logging.getLogger(__name__)


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


def _charge_misfit(charge: Charge, booking: Booking) -> str | None:
    if booking.payment_intent_id is None or charge.payment_intent_id != booking.payment_intent_id:
        return "not the booking's payment"
    if booking.charge_id is not None and charge.id != booking.charge_id:
        return "not the booking's charge"
    if charge.currency != booking.currency:
        return "another currency"
    return None


def _refund_misfit(refund: Refund, charge: Charge) -> str | None:
    if refund.charge_id != charge.id:
        return "of another charge"
    if refund.payment_intent_id not in (None, charge.payment_intent_id):
        return "of another payment"
    if refund.currency != charge.currency:
        return "another currency"
    if not 0 < refund.amount <= charge.amount:
        return f"amount {refund.amount} outside 1..{charge.amount} (the charge)"
    return None


async def _sync_refunds(
    db: AsyncSession,
    charge: Charge | None,
    refunds: Iterable[Refund],
    event: StripeEvent,
    ctx: HandlerContext,
) -> None:
    """Book Stripe's refunds of Stripe's charge, each only if it fits the booking's payment."""
    cause = f"{event.type}:{event.id}"
    if charge is None or charge.payment_intent_id is None:
        log.warning("%s %s: the refunded charge has no payment of ours", event.type, event.id)
        return
    booking_id = await _ensure_payment(db, charge.payment_intent_id, ctx, cause)
    if booking_id is None:
        return  # a payment that is not a booking's
    booking = await get_booking(db, booking_id)
    charge_misfit = _charge_misfit(charge, booking)
    for refund in refunds:
        why = charge_misfit or _refund_misfit(refund, charge)
        if why is not None:
            log.warning(
                "%s %s: refund %s not booked on booking %s: %s",
                event.type, event.id, refund.id, booking_id, why,
            )  # fmt: skip
            continue
        await sync_refund(db, refund, clock=ctx.clock, cause=cause)


async def on_refund(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """refund.created / updated / failed, charge.refund.updated: one refund, as Stripe has it
    (made here or in Stripe's dashboard, succeeded or failed)."""
    refund_id = object_id(event, "re_", "pyr_")
    if refund_id is None:
        return
    refund = await reread(event, "refund", refund_id, ctx.gateway.retrieve_refund)
    if refund is None:
        return
    charge = refund.charge
    if charge is None and refund.charge_id is not None:
        charge = await ctx.gateway.retrieve_charge(refund.charge_id)
    await _sync_refunds(db, charge, [refund], event, ctx)


async def on_charge_refunded(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """charge.refunded: every refund Stripe lists for the charge is booked like refund.created.

    Stripe no longer embeds the refunds list in this event (since 2022-11-15),
    and an embedded one would be the message's word anyway: they are listed
    from Stripe, so a dashboard refund whose refund.created is lost or late is
    still booked (each one once, keyed on its refund id).
    """
    charge_id = object_id(event, "ch_", "py_")
    if charge_id is None:
        return
    charge = await reread(event, "charge", charge_id, ctx.gateway.retrieve_charge)
    if charge is None:
        return
    refunds: list[Refund] = []
    cursor: str | None = None
    while True:
        page = await ctx.gateway.list_refunds(charge=charge.id, starting_after=cursor)
        refunds.extend(page.data)
        if not page.has_more or page.last_id is None:
            break
        cursor = page.last_id
    await _sync_refunds(db, charge, reversed(refunds), event, ctx)  # oldest first


async def on_dispute(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """charge.dispute.created / funds_withdrawn / closed: the dispute as Stripe has it now.

    Stripe's status decides, not the event type: a late ``created`` for a
    dispute already lost books the opening and the loss, a forged ``closed``
    for an open one books nothing more.
    """
    dispute_id = object_id(event, "du_", "dp_")
    if dispute_id is None:
        return
    dispute = await reread(event, "dispute", dispute_id, ctx.gateway.retrieve_dispute)
    if dispute is None:
        return
    cause = f"{event.type}:{event.id}"
    booking_id = await _ensure_payment(db, dispute.payment_intent_id, ctx, cause)
    if booking_id is None:
        log.warning("dispute %s is for no booking of ours", dispute.id)
        return
    why = dispute_misfit(dispute, await get_booking(db, booking_id))
    if why is not None:
        log.warning(
            "%s %s: dispute %s not booked on booking %s: %s",
            event.type, event.id, dispute.id, booking_id, why,
        )  # fmt: skip
        return
    now = ctx.clock.now()
    if dispute.status in ("won", "lost"):
        await close_dispute(db, booking_id, dispute, now=now)
    else:
        await open_dispute(db, booking_id, dispute, now=now)
