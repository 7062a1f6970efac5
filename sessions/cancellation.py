"""Cancelling a coaching session: no new bookings, unpaid ones closed, paid ones refunded.

The cancellation commits on its own first, with the earnings of its paid
bookings kept from release (``OWED_REFUND_HOLD``); then each booking is settled on
its own (at most one Stripe call each, no row lock held across it), so a crash
or a Stripe outage half-way leaves the rest owed, and ``settle_owed`` (called
right after the cancellation, and by a job) finds them again. Each refund is a
refund intent committed before the call (sessions/refund_intents.py): a settle
run twice, or two processes settling at once, replay its key and refund once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.errors import Conflict
from core.stripe_errors import StripeOutcomeUnknown
from core.stripe_gateway import StripeGateway
from sessions import refund_intents as intents
from sessions.audit import Actor, transition
from sessions.booking import get_booking
from sessions.booking_changes import expire_checkout
from sessions.catalog import lock_session
from sessions.earnings import OWED_REFUND_HOLD
from sessions.errors import SessionNotCancellable, SessionNotFound
from sessions.models import Booking, BookingStatus, CoachingSession, SessionStatus
from sessions.refund_failures import FAILED_STATUSES
from sessions.refund_sending import carry_out
from sessions.refunds import REFUNDABLE

log = logging.getLogger(__name__)

# A refund Stripe refused, or one that failed this many times, waits for a person:
# retrying it every few minutes would not change Stripe's mind.
MAX_FAILED_REFUNDS = 3
REFUSED_CAUSE = "session_cancelled:refund_refused"
UNPAID = (BookingStatus.PENDING, BookingStatus.FAILED)
_CANCELLED = f"s.status = '{SessionStatus.CANCELLED.value}'"
# SQL over ``b``: a paid booking that still holds money the mentee is owed.
_PAID = ", ".join(f"'{x.value}'" for x in REFUNDABLE)
_HOLDS_MONEY = f"b.status IN ({_PAID}) AND b.amount_refunded < b.amount"

Outcome = Literal["refunded", "closed", "nothing", "refused", "unavailable"]


@dataclass(slots=True)
class SettleReport:
    refunded: list[int] = field(default_factory=list)  # paid bookings refunded in full
    closed: list[int] = field(default_factory=list)  # unpaid bookings cancelled
    waiting: list[int] = field(default_factory=list)  # Stripe unavailable: the job retries
    refused: list[int] = field(default_factory=list)  # Stripe said no: for a person


async def cancel_session(
    db: AsyncSession, *, session_id: int, actor: Actor, clock: Clock
) -> CoachingSession:
    """Mark the session cancelled (idempotent); the caller commits, then settles.

    Its coach may cancel until it starts, an admin at any time. From here on a
    payment that still arrives is refunded automatically (sessions/payments.py).
    """
    row = await lock_session(db, session_id)
    is_admin = actor.role == "admin"
    if not is_admin and row.coach_id != actor.user_id:
        raise SessionNotFound(f"coaching session {session_id} does not exist")
    if row.status == SessionStatus.CANCELLED.value:
        return row
    now = clock.now()
    if not is_admin and row.starts_at <= now:
        raise SessionNotCancellable("a session that has started can only be cancelled by an admin")
    row.status = SessionStatus.CANCELLED.value
    row.updated_at = now
    await db.flush()
    await hold_owed_earnings(db, session_id=row.id, now=now)
    return row


def owed_filter() -> str:
    """SQL over ``b`` (a booking) and ``s`` (its session): still to close or refund."""
    failed = ", ".join(f"'{s}'" for s in FAILED_STATUSES)
    unpaid = ", ".join(f"'{s.value}'" for s in UNPAID)
    return (
        f"{_CANCELLED} AND (b.status IN ({unpaid}) OR ({_HOLDS_MONEY}"
        f" AND NOT EXISTS (SELECT 1 FROM booking_events e WHERE e.booking_id = b.id"
        f"   AND e.cause = '{REFUSED_CAUSE}')"
        f" AND (SELECT count(*) FROM refunds r WHERE r.booking_id = b.id"
        f"   AND r.status IN ({failed})) < {MAX_FAILED_REFUNDS}))"
    )


_OWED = text(
    "SELECT b.id FROM bookings b JOIN coaching_sessions s ON s.id = b.coaching_session_id"
    f" WHERE {owed_filter()} AND (CAST(:sid AS bigint) IS NULL OR s.id = :sid)"
    " ORDER BY b.id LIMIT :n"
)


# Locked in id order first: the job (every session) and a cancellation (one) may
# hold overlapping rows, and must not take them in opposite orders. Wider than
# ``owed_filter``: a refund Stripe refused, or one failed too often, is no longer
# the job's to retry, but its booking still holds the mentee's money.
_HOLD = text(
    "WITH owed AS (SELECT b.id FROM bookings b JOIN coaching_sessions s"
    f" ON s.id = b.coaching_session_id WHERE {_CANCELLED} AND {_HOLDS_MONEY}"
    " AND (CAST(:sid AS bigint) IS NULL OR s.id = :sid)),"
    " held AS (SELECT e.id FROM earnings e JOIN owed ON owed.id = e.booking_id"
    " WHERE e.status = 'pending' AND e.available_at < :renew ORDER BY e.id FOR UPDATE OF e)"
    " UPDATE earnings e SET available_at = :until FROM held WHERE e.id = held.id"
)


async def hold_owed_earnings(
    db: AsyncSession, *, session_id: int | None = None, now: datetime
) -> int:
    """Keep the pending earnings of cancelled sessions' bookings that still hold money
    from release (of one session, or of all): any due within half of
    ``OWED_REFUND_HOLD`` moves to ``now + OWED_REFUND_HOLD`` (so a run every few
    minutes rewrites each row twice a day, not every time). How many moved."""
    params = {"sid": session_id, "until": now + OWED_REFUND_HOLD}
    params["renew"] = now + OWED_REFUND_HOLD / 2
    result = await db.execute(_HOLD, params)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def bookings_owed(
    db: AsyncSession, *, session_id: int | None = None, limit: int
) -> list[int]:
    """Bookings of cancelled sessions still to close or refund (oldest first)."""
    rows = await db.execute(_OWED, {"sid": session_id, "n": limit})
    return [r[0] for r in rows]


_AUTO = intents.Ask(
    source="auto", requested=None, reason="session_cancelled", actor_user_id=None, client_key=None
)


async def settle_booking(
    db: AsyncSession, *, booking_id: int, gateway: StripeGateway, clock: Clock
) -> Outcome:
    """Close an unpaid booking of a cancelled session, or refund what remains of a paid one.

    Commits before each Stripe call (no row lock held across it); the caller
    commits the outcome."""
    booking = await get_booking(db, booking_id)
    session = await db.get(CoachingSession, booking.coaching_session_id)
    if session is None or session.status != SessionStatus.CANCELLED.value:
        return "nothing"
    now = clock.now()
    if booking.status in UNPAID:
        return await _close_unpaid(db, booking, gateway=gateway, now=now)

    async def new_amount(locked: Booking) -> int | None:
        remaining = locked.amount - locked.amount_refunded
        if locked.status not in REFUNDABLE or remaining <= 0 or locked.payment_intent_id is None:
            return None
        return remaining

    try:
        answer = await carry_out(
            db,
            booking_id,
            _AUTO,
            actor=Actor.system(),
            authorize=lambda _: None,
            new_amount=new_amount,
            gateway=gateway,
            now=now,
        )
    except intents.RefundInProgress as exc:
        # A refund someone asked for is being made: settled on a later run.
        raise StripeOutcomeUnknown(str(exc)) from exc
    except Conflict as exc:
        log.warning("refund of booking %s (session cancelled) refused: %s", booking.id, exc)
        locked = await get_booking(db, booking_id, lock=True)
        await transition(
            db, locked, locked.status, actor=Actor.system(), cause=REFUSED_CAUSE, at=now,
            detail={"error": str(exc)[:500]},
        )  # fmt: skip
        return "refused"
    if answer is None:
        return "nothing"
    # Each refund is reported by one run: the one that booked it, or (booked by its
    # webhook first) the one that made it; a run that replayed another's is silent.
    made_here = not answer.replayed and answer.refund.source == "stripe"
    return "refunded" if answer.booked or made_here else "nothing"


async def _close_unpaid(
    db: AsyncSession, booking: Booking, *, gateway: StripeGateway, now: datetime
) -> Outcome:
    # An open Checkout closed now cannot be paid; one paid meanwhile is
    # refunded by the payment's own webhook (the session is cancelled).
    await db.commit()
    if await expire_checkout(gateway, booking) == "paid":
        return "nothing"
    locked = await get_booking(db, booking.id, lock=True)
    if locked.status not in UNPAID or locked.attempt != booking.attempt:
        return "nothing"  # paid or retried meanwhile: the next run looks again
    await transition(
        db, locked, BookingStatus.CANCELLED.value, actor=Actor.system(),
        cause="session_cancelled", at=now,
    )  # fmt: skip
    return "closed"


async def settle_owed(
    factory: async_sessionmaker[AsyncSession],
    *,
    gateway: StripeGateway,
    clock: Clock,
    session_id: int | None = None,
    limit: int = 200,
) -> SettleReport:
    """Settle owed bookings, one transaction each; Stripe outages are left for the next run."""
    report = SettleReport()
    async with factory() as db, db.begin():
        # Before any Stripe call: an outage from here to the hold's end must not
        # let the release job pay out shares whose refund is still owed.
        await hold_owed_earnings(db, session_id=session_id, now=clock.now())
        owed = await bookings_owed(db, session_id=session_id, limit=limit)
    for booking_id in owed:
        try:
            async with factory() as db:
                outcome = await settle_booking(
                    db, booking_id=booking_id, gateway=gateway, clock=clock
                )
                await db.commit()
        except StripeOutcomeUnknown:
            report.waiting.append(booking_id)
            continue
        except Exception:  # one booking's surprise must not starve the others
            log.exception("settling booking %s of a cancelled session failed", booking_id)
            report.waiting.append(booking_id)
            continue
        if outcome == "refunded":
            report.refunded.append(booking_id)
        elif outcome == "closed":
            report.closed.append(booking_id)
        elif outcome == "refused":
            report.refused.append(booking_id)
    return report
