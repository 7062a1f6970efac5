"""Refunds, full or partial: asked through our API, or made in Stripe's dashboard.

Both paths end in ``apply_refund``, keyed on the Stripe refund id, under the
booking's row lock, so a refund is booked once whichever path sees it first.
The split of each refund is cumulative (core.money.refund_split): all the
refunds of a booking together reverse its split exactly.

A refund we ask for is an intent first (sessions/refund_intents.py has the
rules): (1) under the booking's lock, the request is matched to an earlier
one or recorded as a new ``refund_intents`` row, and committed; (2) Stripe
is called with the intent's key, no lock held; (3) the booking is locked
again, the refund booked and the intent settled. A lost answer anywhere
after (1) leaves the intent open, and the retry replays the same key.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.errors import Conflict, InvalidInput
from core.money import MAX_AMOUNT
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from core.stripe_types import Refund as StripeRefund
from sessions import refund_intents as intents
from sessions.audit import Actor
from sessions.booking import get_booking
from sessions.errors import NotYourBooking, RefundTooLarge, RefundWindowClosed
from sessions.models import Booking, BookingStatus, CoachingSession, Refund
from sessions.refund_apply import apply_refund
from sessions.refund_failures import FAILED_STATUSES, reverse_failed_refund
from sessions.refund_sending import RefundAnswer, carry_out

log = logging.getLogger(__name__)
_CLIENT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,200}")

REFUNDABLE = (BookingStatus.PAID, BookingStatus.PARTIALLY_REFUNDED)
MAX_REASON = 500
# Text without control characters (newline and tab allowed): PostgreSQL refuses
# NUL, and a reason it refuses after Stripe refunded would fail the request
# with the money already gone. Checked before any call, for every caller.
PLAIN_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
_PLAIN_TEXT = re.compile(PLAIN_TEXT)


def _owned(booking: Booking, actor: Actor) -> None:
    if actor.role == "admin" or (actor.role == "coach" and actor.user_id == booking.coach_id):
        return
    if actor.user_id != booking.mentee_id:
        raise NotYourBooking("this booking belongs to someone else")


def _may_refund(booking: Booking, session: CoachingSession, actor: Actor, now: datetime) -> None:
    """Mentee: until ``refund_window_hours`` before the start; the coach or an admin: always."""
    _owned(booking, actor)
    if actor.role == "admin" or (actor.role == "coach" and actor.user_id == booking.coach_id):
        return
    if now > session.starts_at - timedelta(hours=session.refund_window_hours):
        raise RefundWindowClosed(
            f"refunds close {session.refund_window_hours} h before the session starts"
        )


def _validate(client_key: str | None, amount: object, reason: object) -> None:
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


async def request_refund(
    db: AsyncSession,
    *,
    booking_id: int,
    actor: Actor,
    amount: object = None,
    reason: object = None,
    gateway: StripeGateway,
    clock: Clock,
    client_key: str | None = None,
    settings: Settings | None = None,
) -> RefundAnswer:
    """Refund ``amount`` (default: all that remains) of a paid booking, once per request.

    A retry of the same request (see sessions/refund_intents.py) gets the
    first one's refund (``replayed``) instead of a second one. Commits the
    intent before calling Stripe; the caller commits the outcome.
    """
    now = clock.now()
    _validate(client_key, amount, reason)
    assert amount is None or isinstance(amount, int)
    ask = intents.Ask(
        source="api",
        requested=amount,
        reason=reason if isinstance(reason, str) else None,
        actor_user_id=actor.user_id,
        client_key=client_key,
    )
    if settings is not None:  # else the defaults of the refund intent settings
        ask = ask.with_settings(settings)

    async def new_amount(booking: Booking) -> int:
        session = await db.get(CoachingSession, booking.coaching_session_id)
        assert session is not None
        _may_refund(booking, session, actor, now)
        if booking.status not in REFUNDABLE or booking.payment_intent_id is None:
            raise Conflict(f"a {booking.status} booking cannot be refunded")
        remaining = booking.amount - booking.amount_refunded
        want = remaining if amount is None else amount
        if want > remaining:
            raise RefundTooLarge(f"at most {remaining} can still be refunded")
        return want

    answer = await carry_out(
        db,
        booking_id,
        ask,
        actor=actor,
        authorize=lambda booking: _owned(booking, actor),
        new_amount=new_amount,
        gateway=gateway,
        now=now,
    )
    assert answer is not None
    return answer


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
    settings: Settings | None = None,
) -> Refund:
    """``request_refund``'s refund."""
    answer = await request_refund(
        db,
        booking_id=booking_id,
        actor=actor,
        amount=amount,
        reason=reason,
        gateway=gateway,
        clock=clock,
        client_key=client_key,
        settings=settings,
    )
    return answer.refund


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
    now = clock.now()
    if refund.status in FAILED_STATUSES:
        await reverse_failed_refund(db, booking, refund, now=now, cause=cause)
        await intents.settle_from_stripe(db, refund, failed=True, now=now)
        return None
    row = await apply_refund(
        db, booking, refund, source="stripe", actor=Actor.stripe(), now=now, reason=cause
    )
    # Ours, seen before our own request could record it (its answer lost, say).
    await intents.settle_from_stripe(db, refund, failed=False, now=now)
    return row
