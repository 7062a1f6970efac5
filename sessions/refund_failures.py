"""Refunds that Stripe reports failed or canceled after we booked them.

A refund can fail days later (closed card, bank refusal): Stripe puts the
money back on the platform's balance (a ``refund_failure`` balance
transaction) and sends refund.updated / refund.failed. The refund's posting
is then reversed exactly (``refund_failed:<re>``, legs negated), its coach
part goes back where it came from (pending while the earning is unreleased,
else available), and the booking counts it as refunded no more.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import split
from core.stripe_types import Refund as StripeRefund
from ledger.accounts import Kind
from ledger.posting import TxType, post
from sessions.audit import Actor, transition
from sessions.models import Booking, BookingStatus, Refund
from sessions.postings import reversal_legs

log = logging.getLogger(__name__)

FAILED_STATUSES = ("failed", "canceled")


async def reverse_failed_refund(
    db: AsyncSession, booking: Booking, refund: StripeRefund, *, now: datetime, cause: str
) -> bool:
    """Undo the booking of a refund that failed; False if there is nothing (more) to undo.

    The caller holds the booking's row lock, so this runs once per refund.
    """
    row = (
        await db.execute(
            select(Refund).where(Refund.stripe_refund_id == refund.id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        if booking.payment_intent_id is None or refund.payment_intent_id not in (
            None,
            booking.payment_intent_id,
        ):
            return False
        # Failed before we saw it succeed (events out of order): remember it, so
        # a late refund.created with its stale "succeeded" books nothing. No
        # ledger transaction; the parts are only what it would have been.
        parts = split(refund.amount, booking.fee_bps)
        db.add(
            Refund(
                booking_id=booking.id,
                stripe_refund_id=refund.id,
                payment_intent_id=booking.payment_intent_id,
                amount=refund.amount,
                currency=refund.currency,
                platform_fee_part=parts.platform_fee,
                coach_part=parts.coach_share,
                coach_account_kind=Kind.PENDING.value,
                source="stripe",
                reason=cause,
                status=refund.status or "failed",
                ledger_transaction_id=None,
                created_at=now,
            )
        )
        await db.flush()
        return True
    if row.status in FAILED_STATUSES or row.ledger_transaction_id is None:
        return False
    row.status = refund.status or "failed"
    if row.source == "auto":
        # The payment it returned is not the booking's to honour: the money is
        # the mentee's and needs a person (a new refund), not a coach credit.
        log.error("automatic refund %s of booking %s failed", refund.id, booking.id)
        await transition(
            db,
            booking,
            booking.status,
            actor=Actor.stripe(),
            cause="auto_refund_failed",
            at=now,
            detail={"refund": refund.id, "amount": row.amount, "stripe_event": cause},
        )
        return True
    legs = await reversal_legs(db, booking, now=now, transaction_id=row.ledger_transaction_id)
    await post(
        db,
        type=TxType.REFUND,
        idempotency_key=f"refund_failed:{refund.id}",
        legs=legs,
        occurred_at=now,
        coach_id=booking.coach_id,
        payer_id=booking.mentee_id,
        coaching_session_id=booking.coaching_session_id,
        booking_id=booking.id,
        stripe_object_id=refund.id,
        stripe_payment_intent_id=row.payment_intent_id,
        metadata={"event": "refund_failed", "failure_reason": refund.failure_reason},
    )
    booking.amount_refunded -= row.amount
    to = BookingStatus.PAID if booking.amount_refunded == 0 else BookingStatus.PARTIALLY_REFUNDED
    await transition(
        db,
        booking,
        to.value,
        actor=Actor.stripe(),
        cause="refund_failed",
        at=now,
        detail={
            "refund": refund.id,
            "amount": row.amount,
            "failure_reason": refund.failure_reason,
            "stripe_event": cause,
        },
    )
    return True
