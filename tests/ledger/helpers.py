"""Ledger test helpers: accounts and a session-payment posting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.money import split
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, PostResult, TxType, post

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class PaymentAccounts:
    stripe: int
    fees: int
    pending: int


async def payment_accounts(
    db: AsyncSession, coach_id: int, currency: str = "usd"
) -> PaymentAccounts:
    return PaymentAccounts(
        stripe=await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, currency)),
        fees=await get_account_id(db, AccountRef.platform(Kind.FEE_REVENUE, currency)),
        pending=await get_account_id(db, AccountRef.coach(coach_id, Kind.PENDING, currency)),
    )


async def post_payment(
    db: AsyncSession,
    accts: PaymentAccounts,
    *,
    key: str,
    gross: int,
    bps: int = 2000,
    currency: str = "usd",
) -> PostResult:
    s = split(gross, bps)
    return await post(
        db,
        type=TxType.SESSION_PAYMENT,
        idempotency_key=key,
        occurred_at=T0,
        legs=[
            Leg(accts.stripe, s.gross, currency),
            Leg(accts.fees, -s.platform_fee, currency),
            Leg(accts.pending, -s.coach_share, currency),
        ],
    )
