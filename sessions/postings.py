"""Ledger postings of the payment flow. Signs: debit +, credit -.

payment ``payment:<pi>``        stripe_balance +gross, fee_revenue -fee, coach pending -share
                                (stripe_object_id and metadata charge_id: the charge)
processing fee ``processing_fee:<txn>``  processing_fees +fee, stripe_balance -fee
refund ``refund:<re>``          stripe_balance -amount, fee_revenue +fee_part,
                                coach pending|available +share_part
Disputes: see sessions/disputes.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import Split, split
from core.stripe_types import BalanceTransaction
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, PostResult, TxType, post
from sessions.earnings import hold_if_session_cancelled, return_share
from sessions.models import Booking


async def platform(db: AsyncSession, kind: Kind, currency: str) -> int:
    return await get_account_id(db, AccountRef.platform(kind, currency))


async def coach(db: AsyncSession, coach_id: int, kind: Kind, currency: str) -> int:
    return await get_account_id(db, AccountRef.coach(coach_id, kind, currency))


_POSTED_LEGS = text(
    "SELECT e.account_id, e.amount, e.currency, a.owner_type, a.kind "
    "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
    "JOIN ledger_accounts a ON a.id = e.account_id "
    "WHERE t.id = :t OR t.idempotency_key = :k ORDER BY e.id"
)


async def reversal_legs(
    db: AsyncSession,
    booking: Booking,
    *,
    now: datetime,
    transaction_id: int | None = None,
    key: str | None = None,
) -> list[Leg]:
    """The legs that undo one posted transaction (by id or idempotency key) of ``booking``.

    Every amount is negated; the coach's part goes back where that money is
    now: to pending while its earning is still held (``return_share`` adds it
    back there, and ``hold_if_session_cancelled`` keeps it there while a
    cancelled session's refund is owed again), to available once released.
    Empty if nothing was posted.
    """
    rows = await db.execute(_POSTED_LEGS, {"t": transaction_id, "k": key})
    legs: list[Leg] = []
    back_to_pending = False
    for account_id, amount, currency, owner, kind in rows:
        if owner == "coach":
            back = (
                await return_share(db, booking.id, int(amount))
                if kind == Kind.PENDING.value
                else Kind.AVAILABLE
            )
            back_to_pending = back_to_pending or back == Kind.PENDING
            account_id = await coach(db, booking.coach_id, back, currency)
        legs.append(Leg(int(account_id), -int(amount), currency))
    if back_to_pending:
        await hold_if_session_cancelled(db, booking, now=now)
    return legs


def _nonzero(legs: list[Leg]) -> list[Leg]:
    # A 0 % or 100 % fee makes one side zero; the ledger takes no zero legs.
    return [leg for leg in legs if leg.amount != 0]


def _attrs(booking: Booking, **extra: Any) -> dict[str, Any]:
    return {
        "coach_id": booking.coach_id,
        "payer_id": booking.mentee_id,
        "coaching_session_id": booking.coaching_session_id,
        "booking_id": booking.id,
        **extra,
    }


async def post_payment(
    db: AsyncSession,
    booking: Booking,
    *,
    gross: int,
    payment_intent_id: str,
    charge_id: str | None,
    at: datetime,
) -> tuple[PostResult, Split]:
    s = split(gross, booking.fee_bps)
    cur = booking.currency
    legs = [
        Leg(await platform(db, Kind.STRIPE_BALANCE, cur), s.gross, cur),
        Leg(await platform(db, Kind.FEE_REVENUE, cur), -s.platform_fee, cur),
        Leg(await coach(db, booking.coach_id, Kind.PENDING, cur), -s.coach_share, cur),
    ]
    result = await post(
        db,
        type=TxType.SESSION_PAYMENT,
        idempotency_key=f"payment:{payment_intent_id}",
        legs=_nonzero(legs),
        occurred_at=at,
        stripe_payment_intent_id=payment_intent_id,
        # The charge is what Stripe's balance transaction names (its source):
        # reconciliation links the payment by it, even with no fee posting.
        stripe_object_id=charge_id or payment_intent_id,
        metadata={"fee_bps": booking.fee_bps, **({"charge_id": charge_id} if charge_id else {})},
        **_attrs(booking),
    )
    return result, s


async def post_processing_fee(
    db: AsyncSession,
    booking: Booking,
    bt: BalanceTransaction,
    *,
    payment_intent_id: str,
    at: datetime,
) -> PostResult | None:
    """Stripe's fee from the charge's balance transaction, as its own transaction."""
    if bt.fee <= 0:
        return None
    cur = bt.currency
    return await post(
        db,
        type=TxType.PROCESSING_FEE,
        idempotency_key=f"processing_fee:{bt.id}",
        legs=[
            Leg(await platform(db, Kind.PROCESSING_FEES, cur), bt.fee, cur),
            Leg(await platform(db, Kind.STRIPE_BALANCE, cur), -bt.fee, cur),
        ],
        occurred_at=at,
        stripe_object_id=bt.id,
        stripe_payment_intent_id=payment_intent_id,
        **_attrs(booking),
    )


async def post_refund(
    db: AsyncSession,
    booking: Booking,
    *,
    refund_id: str,
    parts: Split,
    coach_kind: Kind,
    payment_intent_id: str,
    at: datetime,
) -> PostResult:
    cur = booking.currency
    legs = [
        Leg(await platform(db, Kind.STRIPE_BALANCE, cur), -parts.gross, cur),
        Leg(await coach(db, booking.coach_id, coach_kind, cur), parts.coach_share, cur),
    ]
    if parts.platform_fee:
        legs.append(Leg(await platform(db, Kind.FEE_REVENUE, cur), parts.platform_fee, cur))
    return await post(
        db,
        type=TxType.REFUND,
        idempotency_key=f"refund:{refund_id}",
        legs=_nonzero(legs),
        occurred_at=at,
        stripe_object_id=refund_id,
        stripe_payment_intent_id=payment_intent_id,
        metadata={"fee_part": parts.platform_fee, "coach_part": parts.coach_share},
        **_attrs(booking),
    )
