"""Booking one Stripe refund of a booking's payment: ledger, refunds row, booking status."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import refund_split
from core.stripe_types import Refund as StripeRefund
from sessions.audit import Actor, transition
from sessions.earnings import take_share
from sessions.models import Booking, BookingEvent, BookingStatus, Refund
from sessions.postings import post_refund
from sessions.refund_failures import FAILED_STATUSES

log = logging.getLogger(__name__)

REFUND_UNBOOKED_CAUSE = "refund_unbooked"

Source = Literal["api", "auto", "stripe"]


async def apply_refund(
    db: AsyncSession,
    booking: Booking,
    refund: StripeRefund,
    *,
    source: Source,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
) -> Refund | None:
    """Book one Stripe refund of the booking's payment; None if nothing was booked.

    ``refund`` must have been read from Stripe (never taken from a message).
    The caller holds the booking's row lock. A refund larger than what the
    booking still holds, or in another currency, is refused, never clipped:
    Stripe moved that money, so booking a part of it would hide the rest.
    It is logged as an error, written to the booking's audit
    (``REFUND_UNBOOKED_CAUSE``) and listed as ``refund_unbooked`` among the
    refunds needing attention (sessions/attention.py) for finance.
    """
    existing = (
        await db.execute(select(Refund).where(Refund.stripe_refund_id == refund.id))
    ).scalar_one_or_none()
    if existing is not None:
        return None
    if refund.status in FAILED_STATUSES:
        return None
    if booking.payment_intent_id is None or refund.payment_intent_id not in (
        None,
        booking.payment_intent_id,
    ):
        log.warning("refund %s is not for booking %s's payment", refund.id, booking.id)
        return None
    remaining = booking.amount - booking.amount_refunded
    misfit = refund_misfit(booking, refund)
    if misfit is not None:
        await _refuse(db, booking, refund, misfit, now=now)
        return None
    amount = refund.amount
    parts = refund_split(
        original_gross=booking.amount,
        bps=booking.fee_bps,
        refunded_before=booking.amount_refunded,
        refund=amount,
    )
    kind = await take_share(db, booking.id, parts.coach_share)
    posted = await post_refund(
        db,
        booking,
        refund_id=refund.id,
        parts=parts,
        coach_kind=kind,
        payment_intent_id=booking.payment_intent_id,
        at=now,
    )
    row = Refund(
        booking_id=booking.id,
        stripe_refund_id=refund.id,
        payment_intent_id=booking.payment_intent_id,
        amount=amount,
        currency=booking.currency,
        platform_fee_part=parts.platform_fee,
        coach_part=parts.coach_share,
        coach_account_kind=kind.value,
        source=source,
        requested_by=actor.user_id,
        reason=reason,
        status=refund.status or "succeeded",
        ledger_transaction_id=posted.transaction_id,
        created_at=now,
    )
    db.add(row)
    assert remaining >= amount
    booking.amount_refunded += amount
    to = (
        BookingStatus.REFUNDED
        if booking.amount_refunded == booking.amount
        else BookingStatus.PARTIALLY_REFUNDED
    )
    await transition(
        db,
        booking,
        to.value,
        actor=actor,
        cause=f"refund:{source}",
        at=now,
        detail={
            "refund": refund.id,
            "amount": amount,
            "fee_part": parts.platform_fee,
            "coach_part": parts.coach_share,
            "from_account": kind.value,
        },
    )
    return row


def refund_misfit(booking: Booking, refund: StripeRefund) -> str | None:
    """Why Stripe's refund cannot be booked against ``booking`` (None: it can)."""
    if refund.currency != booking.currency:
        return f"currency {refund.currency} is not the booking's {booking.currency}"
    remaining = booking.amount - booking.amount_refunded
    if not 0 < refund.amount <= remaining:
        return f"amount {refund.amount} outside 1..{remaining} (what the booking still holds)"
    return None


async def _refuse(
    db: AsyncSession, booking: Booking, refund: StripeRefund, misfit: str, *, now: datetime
) -> None:
    """Record, once per Stripe refund, that it was not booked and why."""
    seen = await db.execute(
        select(BookingEvent.id)
        .where(
            BookingEvent.booking_id == booking.id,
            BookingEvent.cause == REFUND_UNBOOKED_CAUSE,
            BookingEvent.detail["refund"].astext == refund.id,
        )
        .limit(1)
    )
    if seen.scalar_one_or_none() is not None:
        return
    log.error("refund %s not booked on booking %s: %s", refund.id, booking.id, misfit)
    await transition(
        db,
        booking,
        booking.status,
        actor=Actor.stripe(),
        cause=REFUND_UNBOOKED_CAUSE,
        at=now,
        detail={
            "refund": refund.id,
            "amount": refund.amount,
            "currency": refund.currency,
            "error": misfit,
        },
    )
