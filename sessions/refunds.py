"""Refunds, full or partial: asked through our API, or made in Stripe's dashboard.

Both paths end in ``apply_refund``, keyed on the Stripe refund id, under the
booking's row lock, so a refund is booked once whichever path sees it first.
The split of each refund is cumulative (core.money.refund_split): all the
refunds of a booking together reverse its split exactly.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.errors import Conflict, InvalidInput
from core.money import MAX_AMOUNT, refund_split
from core.stripe_errors import StripeRefused
from core.stripe_gateway import StripeGateway, idempotency_key
from core.stripe_types import Refund as StripeRefund
from sessions.audit import Actor, transition
from sessions.booking import get_booking
from sessions.earnings import take_share
from sessions.errors import NotYourBooking, RefundTooLarge, RefundWindowClosed
from sessions.models import Booking, BookingStatus, CoachingSession, Refund
from sessions.postings import post_refund
from sessions.refund_failures import FAILED_STATUSES, reverse_failed_refund

log = logging.getLogger(__name__)
_CLIENT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,200}")

Source = Literal["api", "auto", "stripe"]
REFUNDABLE = (BookingStatus.PAID, BookingStatus.PARTIALLY_REFUNDED)
MAX_REASON = 500
# Text without control characters (newline and tab allowed): PostgreSQL refuses
# NUL, and a reason it refuses after Stripe refunded would fail the request
# with the money already gone. Checked before any call, for every caller.
PLAIN_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
_PLAIN_TEXT = re.compile(PLAIN_TEXT)


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
    """Book one Stripe refund of the booking's payment; None if it was booked already.

    The caller holds the booking's row lock.
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
    amount = min(refund.amount, remaining)
    if amount <= 0:
        return None
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


async def failed_refunds(db: AsyncSession, booking_id: int) -> int:
    """How many of the booking's refunds Stripe failed or canceled (each one makes
    the next attempt's idempotency key new)."""
    stmt = select(func.count()).where(
        Refund.booking_id == booking_id, Refund.status.in_(FAILED_STATUSES)
    )
    return int((await db.execute(stmt)).scalar_one())


def _may_refund(booking: Booking, session: CoachingSession, actor: Actor, now: datetime) -> None:
    """Mentee: until ``refund_window_hours`` before the start; the coach or an admin: always."""
    if actor.role == "admin" or (actor.role == "coach" and actor.user_id == booking.coach_id):
        return
    if actor.user_id != booking.mentee_id:
        raise NotYourBooking("this booking belongs to someone else")
    if now > session.starts_at - timedelta(hours=session.refund_window_hours):
        raise RefundWindowClosed(
            f"refunds close {session.refund_window_hours} h before the session starts"
        )


async def refund_booking(
    db: AsyncSession,
    *,
    booking_id: int,
    actor: Actor,
    amount: object = None,
    reason: object = None,
    gateway: StripeGateway,
    clock: Clock,
    client_key: str | None = None,
) -> Refund:
    """Refund ``amount`` (default: all that remains) of a paid booking.

    ``client_key`` (the request's ``Idempotency-Key``) makes a retried request
    safe even after the first one's refund was booked by its webhook: the
    Stripe key then depends on the client's key alone, so Stripe replays the
    same refund instead of making a second one.
    """
    now = clock.now()
    if client_key is not None and not _CLIENT_KEY.fullmatch(client_key):
        raise InvalidInput(
            "Idempotency-Key: 1 to 200 letters, digits or -_.:", field="Idempotency-Key"
        )
    if amount is not None and (
        not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_AMOUNT
    ):
        raise InvalidInput("amount: must be a positive integer of minor units", field="amount")
    if reason is not None and (
        not isinstance(reason, str) or len(reason) > MAX_REASON or not _PLAIN_TEXT.match(reason)
    ):
        raise InvalidInput(
            f"reason: must be text of at most {MAX_REASON} characters, without control characters",
            field="reason",
        )
    booking = await get_booking(db, booking_id, lock=True)
    session = await db.get(CoachingSession, booking.coaching_session_id)
    assert session is not None
    _may_refund(booking, session, actor, now)
    if booking.status not in REFUNDABLE or booking.payment_intent_id is None:
        raise Conflict(f"a {booking.status} booking cannot be refunded")
    remaining = booking.amount - booking.amount_refunded
    want = remaining if amount is None else amount
    assert isinstance(want, int)
    if want > remaining:
        raise RefundTooLarge(f"at most {remaining} can still be refunded")
    return await refund_at_stripe(
        db,
        booking,
        amount=want,
        actor=actor,
        source="api",
        reason=reason if isinstance(reason, str) else None,
        metadata={
            "booking_id": str(booking.id),
            "source": "api",
            "requested_by": str(actor.user_id),
        },
        # Same request after an unknown outcome -> same key -> one refund. A
        # refund that failed since brings amount_refunded back: the failure
        # count keeps the next attempt from replaying the failed one.
        key=(
            idempotency_key("refund", booking.id, "client", client_key)
            if client_key is not None
            else idempotency_key(
                "refund",
                booking.id,
                booking.amount_refunded,
                want,
                await failed_refunds(db, booking.id),
            )
        ),
        gateway=gateway,
        now=now,
    )


async def refund_at_stripe(
    db: AsyncSession,
    booking: Booking,
    *,
    amount: int,
    actor: Actor,
    source: Source,
    reason: str | None,
    metadata: dict[str, str],
    key: str,
    gateway: StripeGateway,
    now: datetime,
) -> Refund:
    """Refund ``amount`` of the booking's payment at Stripe and book it.

    The caller holds the booking's row lock and has checked the amount.
    """
    assert booking.payment_intent_id is not None
    try:
        refund = await gateway.create_refund(
            payment_intent=booking.payment_intent_id,
            amount=amount,
            metadata=metadata,
            reason="requested_by_customer",
            idempotency_key=key,
        )
    except StripeRefused as exc:
        raise Conflict(f"Stripe refused the refund: {exc.message}") from exc
    if refund.status in FAILED_STATUSES:
        # Nothing left the platform: nothing to book (a retry gets the same answer).
        raise Conflict(f"Stripe could not make the refund ({refund.failure_reason or 'failed'})")
    row = await apply_refund(
        db, booking, refund, source=source, actor=actor, now=now, reason=reason
    )
    if row is None:  # a webhook booked it between Stripe's answer and here
        found = (
            await db.execute(select(Refund).where(Refund.stripe_refund_id == refund.id))
        ).scalar_one()
        return found
    return row


async def sync_refund(
    db: AsyncSession, refund: StripeRefund, *, clock: Clock, cause: str
) -> Refund | None:
    """A refund seen in a webhook (dashboard refunds, or ours echoed back, or one that failed)."""
    booking_id = (
        await db.execute(select(Refund.booking_id).where(Refund.stripe_refund_id == refund.id))
    ).scalar_one_or_none()
    if booking_id is None and refund.payment_intent_id:
        booking_id = (
            await db.execute(
                select(Booking.id).where(Booking.payment_intent_id == refund.payment_intent_id)
            )
        ).scalar_one_or_none()
    if booking_id is None:
        return None
    booking = await get_booking(db, booking_id, lock=True)
    if refund.status in FAILED_STATUSES:
        await reverse_failed_refund(db, booking, refund, now=clock.now(), cause=cause)
        return None
    return await apply_refund(
        db,
        booking,
        refund,
        source="stripe",
        actor=Actor.stripe(),
        now=clock.now(),
        reason=cause,
    )
