"""The coach's Earning per paid booking, and taking shares back out of it.

While the earning is pending (not released), a refund or dispute comes out
of the coach's pending account and ``reduced_before_release`` grows, so the
release moves only the rest. After release it comes out of the available
account, which may go negative and is netted by the next payout.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import CoachProfile
from core.money import Split
from core.settings import Settings
from ledger.accounts import Kind
from ledger.models import Earning, EarningStatus, check_earning_transition
from sessions.models import Booking, CoachingSession, SessionStatus

# While a cancelled session's booking still holds money, the coach's share must
# not be released and paid out: the refund would then take it back from a
# balance already sent (negative, and lost if the coach never earns again).
# Cancelling and the settle runs (sessions/cancellation.py) keep the earning's
# release at least half of this ahead, so it is released only once the booking
# is refunded (the earning is then cancelled) or if the settle job stops for
# half a day. A refund Stripe refused stays held too: a person decides
# (sessions/attention.py lists it).
OWED_REFUND_HOLD = timedelta(hours=24)
_HOLD_ONE = text(
    "UPDATE earnings SET available_at = GREATEST(available_at, :until)"
    f" WHERE booking_id = :b AND status = '{EarningStatus.PENDING}'"
)


async def hold_if_session_cancelled(db: AsyncSession, booking: Booking, *, now: datetime) -> None:
    """After a share came back to ``pending`` (sessions.postings.reversal_legs: a
    refund failed, a dispute won): if the booking's session is cancelled, its
    refund is owed again, so the earning must not be released before the settle
    job has had its chance (its due date may be long past). The caller holds the
    earning's lock already (``return_share``)."""
    session = await db.get(CoachingSession, booking.coaching_session_id)
    if session is not None and session.status == SessionStatus.CANCELLED.value:
        await db.execute(_HOLD_ONE, {"b": booking.id, "until": now + OWED_REFUND_HOLD})


async def create_earning(
    db: AsyncSession,
    booking: Booking,
    session: CoachingSession,
    *,
    parts: Split,
    paid_at: datetime,
    payment_transaction_id: int,
    settings: Settings,
) -> None:
    """available_at = max(paid_at, session end) + the coach's hold; once per booking."""
    profile = await db.get(CoachProfile, booking.coach_id)
    hold = profile.hold_hours if profile is not None else settings.hold_hours
    available_at = max(paid_at, session.ends_at) + timedelta(hours=hold)
    await db.execute(
        insert(Earning)
        .values(
            coach_id=booking.coach_id,
            booking_id=booking.id,
            currency=booking.currency,
            gross=parts.gross,
            platform_fee=parts.platform_fee,
            amount=parts.coach_share,
            reduced_before_release=0,
            available_at=available_at,
            status=EarningStatus.PENDING,
            payment_transaction_id=payment_transaction_id,
            created_at=paid_at,
        )
        .on_conflict_do_nothing(index_elements=["booking_id"])
    )


_UNRELEASED = (EarningStatus.PENDING, EarningStatus.CANCELLED)


async def _locked_earning(db: AsyncSession, booking_id: int) -> Earning | None:
    return (
        await db.execute(
            select(Earning)
            .where(Earning.booking_id == booking_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def take_share(db: AsyncSession, booking_id: int, amount: int) -> Kind:
    """Take ``amount`` of the coach share back; returns the coach account it comes from."""
    earning = await _locked_earning(db, booking_id)
    if earning is None or earning.status not in _UNRELEASED:
        return Kind.AVAILABLE if earning is not None else Kind.PENDING
    if (
        earning.status == EarningStatus.CANCELLED
        and earning.reduced_before_release < earning.amount
    ):
        return Kind.AVAILABLE
    earning.reduced_before_release = min(earning.reduced_before_release + amount, earning.amount)
    if earning.reduced_before_release >= earning.amount:
        check_earning_transition(earning.status, EarningStatus.CANCELLED)
        earning.status = EarningStatus.CANCELLED
    await db.flush()
    return Kind.PENDING


async def return_share(db: AsyncSession, booking_id: int, amount: int) -> Kind:
    """Give back a share taken by ``take_share`` (a dispute won)."""
    earning = await _locked_earning(db, booking_id)
    if earning is None or earning.status not in _UNRELEASED:
        return Kind.AVAILABLE if earning is not None else Kind.PENDING
    earning.reduced_before_release = max(earning.reduced_before_release - amount, 0)
    if (
        earning.status == EarningStatus.CANCELLED
        and earning.reduced_before_release < earning.amount
    ):
        check_earning_transition(earning.status, EarningStatus.PENDING)
        earning.status = EarningStatus.PENDING
    await db.flush()
    return Kind.PENDING
