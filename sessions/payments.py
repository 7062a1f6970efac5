"""Payments from Stripe: honour them (PAID, split posted, earning) or refund them.

Decisions are taken under the coaching session's row lock, then the
booking's, the same order ``book`` uses, so a payment and a booking of the
last seat cannot both win. Everything is keyed on Stripe ids, so a second
delivery of the same payment changes nothing.

No Stripe call happens under those locks (every booking of the session
waits on the first): the charge's fee is read first, and a payment to
refund is decided on a plain read and refunded at Stripe before the locks
are taken (the PaymentIntent is the intent: ``auto-refund:<pi>``, one
refund per payment whoever sends it). Under the locks the decision is
taken again: a refund already made is booked whatever it says now (the
money went back); a refusal seen only under the locks (the booking or the
session cancelled in between) raises ``PaymentNeedsRefund``, and the
event's retry refunds it, lock-free.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.errors import Conflict
from core.money import refund_split
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from core.stripe_types import BalanceTransaction, PaymentIntent
from core.stripe_types import Refund as StripeRefund
from ledger.accounts import Kind
from sessions.audit import Actor, transition
from sessions.booking import get_booking
from sessions.catalog import count_seats, lock_session
from sessions.earnings import create_earning
from sessions.models import Booking, BookingStatus, CoachingSession, Refund, SessionStatus
from sessions.postings import post_payment, post_processing_fee, post_refund

log = logging.getLogger(__name__)

Outcome = Literal["paid", "already", "refunded", "ignored"]
_DONE = (BookingStatus.PAID, BookingStatus.PARTIALLY_REFUNDED, BookingStatus.REFUNDED)


class PaymentNeedsRefund(Conflict):
    """Under the locks a payment turned out to need a refund that the plain read did not
    foresee; the webhook is retried, and its next run refunds with no lock held."""


async def _balance_txn(gateway: StripeGateway, pi: PaymentIntent) -> BalanceTransaction | None:
    charge = pi.latest_charge
    if charge is not None and charge.balance_transaction is not None:
        return charge.balance_transaction
    if pi.latest_charge_id is None:
        return None
    return (await gateway.retrieve_charge(pi.latest_charge_id)).balance_transaction


async def sync_payment(
    db: AsyncSession,
    *,
    payment_intent_id: str,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    cause: str,
) -> Outcome:
    """Re-read the PaymentIntent from Stripe and record it if it succeeded."""
    pi = await gateway.retrieve_payment_intent(payment_intent_id)
    return await book_intent(
        db, pi=pi, gateway=gateway, clock=clock, settings=settings, cause=cause
    )


async def book_intent(
    db: AsyncSession,
    *,
    pi: PaymentIntent,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    cause: str,
) -> Outcome:
    """Record a PaymentIntent just read from Stripe (with its charge and balance
    transaction expanded) if it succeeded: the one place every payment path ends."""
    if pi.status != "succeeded":
        return "ignored"
    booking_id = booking_id_of(pi.metadata)
    if booking_id is None:
        found = (
            await db.execute(select(Booking.id).where(Booking.payment_intent_id == pi.id))
        ).scalar_one_or_none()
        if found is None:
            log.warning("payment %s names no booking; ignored", pi.id)
            return "ignored"
        booking_id = found
    return await record_payment(
        db,
        booking_id=booking_id,
        pi=pi,
        gateway=gateway,
        clock=clock,
        settings=settings,
        cause=cause,
    )


def booking_id_of(metadata: dict[str, str]) -> int | None:
    raw = metadata.get("booking_id", "")
    return int(raw) if raw.isdigit() else None


async def _refusal(
    db: AsyncSession, booking: Booking, session: CoachingSession, pi: PaymentIntent, now: datetime
) -> str | None:
    """Why this payment cannot be honoured, or None when it can."""
    if booking.status in _DONE:
        return "duplicate_payment"
    if booking.status == BookingStatus.CANCELLED:
        return "booking_cancelled"
    if session.status != SessionStatus.PUBLISHED.value:
        return "session_cancelled"
    if pi.amount != booking.amount or pi.currency != booking.currency:
        return "amount_mismatch"
    held = (
        booking.status == BookingStatus.PENDING
        and booking.hold_expires_at is not None
        and booking.hold_expires_at > now
    )
    if held or session.capacity is None:
        return None
    taken = await count_seats(db, session.id, now=now, exclude_booking=booking.id)
    return "seat_taken" if taken >= session.capacity else None


async def _already(db: AsyncSession, booking: Booking, pi: PaymentIntent) -> bool:
    if booking.payment_intent_id == pi.id and booking.status in _DONE:
        return True
    auto = (await db.execute(select(Refund.id).where(Refund.payment_intent_id == pi.id))).first()
    return auto is not None and booking.payment_intent_id != pi.id  # a duplicate refunded before


async def record_payment(
    db: AsyncSession,
    *,
    booking_id: int,
    pi: PaymentIntent,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    cause: str,
) -> Outcome:
    """Honour a succeeded payment, or refund it automatically when the booking cannot be."""
    now = clock.now()
    bt = await _balance_txn(gateway, pi)
    peek = await get_booking(db, booking_id)
    refund: StripeRefund | None = None
    foreseen: str | None = None
    if not await _already(db, peek, pi):
        seen = await db.get(CoachingSession, peek.coaching_session_id)
        assert seen is not None
        foreseen = await _refusal(db, peek, seen, pi, now)
        if foreseen is not None:
            refund = await refund_payment(gateway, peek, pi, reason=foreseen)
    session = await lock_session(db, peek.coaching_session_id)
    booking = await get_booking(db, booking_id, lock=True)
    if await _already(db, booking, pi):
        return "already"
    reason = await _refusal(db, booking, session, pi, now)
    if refund is not None:
        # Refunded on the plain read's reason; if the locks now say "honour" (a seat freed
        # meanwhile) the money is back with the mentee all the same, so it is booked so.
        why = reason or foreseen or "refunded"
        await auto_refund(db, booking, pi, bt, refund, reason=why, now=now, cause=cause)
        return "refunded"
    if reason is not None:
        raise PaymentNeedsRefund(f"payment {pi.id} of booking {booking.id}: {reason}")
    payment, parts = await post_payment(
        db, booking, gross=pi.amount, payment_intent_id=pi.id, charge_id=pi.latest_charge_id, at=now
    )
    if bt is not None:
        await post_processing_fee(db, booking, bt, payment_intent_id=pi.id, at=now)
    booking.payment_intent_id = pi.id
    booking.charge_id = pi.latest_charge_id
    booking.paid_at = now
    await create_earning(
        db,
        booking,
        session,
        parts=parts,
        paid_at=now,
        payment_transaction_id=payment.transaction_id,
        settings=settings,
    )
    await transition(
        db,
        booking,
        BookingStatus.PAID.value,
        actor=Actor.stripe(),
        cause=cause,
        at=now,
        detail={"payment_intent": pi.id, "gross": parts.gross, "fee": parts.platform_fee},
    )
    return "paid"


async def refund_payment(
    gateway: StripeGateway, booking: Booking, pi: PaymentIntent, *, reason: str
) -> StripeRefund:
    """The whole payment refunded at Stripe; one refund per payment (its key is the
    PaymentIntent's, and every parameter is the payment's), whoever asks and however often.
    The metadata keeps the first reason only in the refund Stripe made first."""
    return await gateway.create_refund(
        payment_intent=pi.id,
        amount=None,
        metadata={"booking_id": str(booking.id), "source": "auto"},
        reason="duplicate" if reason == "duplicate_payment" else None,
        idempotency_key=f"auto-refund:{pi.id}",
    )


async def auto_refund(
    db: AsyncSession,
    booking: Booking,
    pi: PaymentIntent,
    bt: BalanceTransaction | None,
    refund: StripeRefund,
    *,
    reason: str,
    now: datetime,
    cause: str,
) -> None:
    """Book a payment we could not honour and its refund, so the ledger matches Stripe.
    The caller holds the session's and the booking's locks."""
    # The split uses the booking's fee rate; the payment is posted too, so the
    # coach's pending account goes -share then +share and ends where it was.
    await post_payment(
        db, booking, gross=pi.amount, payment_intent_id=pi.id, charge_id=pi.latest_charge_id, at=now
    )
    if bt is not None:
        await post_processing_fee(db, booking, bt, payment_intent_id=pi.id, at=now)
    parts = refund_split(
        original_gross=pi.amount, bps=booking.fee_bps, refunded_before=0, refund=refund.amount
    )
    posted = await post_refund(
        db,
        booking,
        refund_id=refund.id,
        parts=parts,
        coach_kind=Kind.PENDING,
        payment_intent_id=pi.id,
        at=now,
    )
    db.add(
        Refund(
            booking_id=booking.id,
            stripe_refund_id=refund.id,
            payment_intent_id=pi.id,
            amount=refund.amount,
            currency=refund.currency,
            platform_fee_part=parts.platform_fee,
            coach_part=parts.coach_share,
            coach_account_kind=Kind.PENDING.value,
            source="auto",
            reason=reason,
            status=refund.status or "succeeded",
            ledger_transaction_id=posted.transaction_id,
            created_at=now,
        )
    )
    to_status = booking.status
    if booking.status not in _DONE:
        # The booking's own (only) payment: it ends refunded, not active.
        booking.payment_intent_id = pi.id
        booking.charge_id = pi.latest_charge_id
        booking.paid_at = now
        booking.amount_refunded = min(refund.amount, booking.amount)
        to_status = BookingStatus.REFUNDED.value
    await transition(
        db,
        booking,
        to_status,
        actor=Actor.system(),
        cause=f"auto_refund:{reason}",
        at=now,
        detail={
            "payment_intent": pi.id,
            "refund": refund.id,
            "amount": refund.amount,
            "stripe_event": cause,
        },
    )
