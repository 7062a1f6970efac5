"""What a coach sees of their money: balances, earnings, payouts (read models).

Balances come from the ledger (O(1) per account); "paid out" and "lifetime
earnings" from the payouts and earnings rows, since the ledger keeps no
``paid_out`` account (see payouts/service.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.accounts import coach_balances

MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class CurrencyBalance:
    currency: str
    pending: int  # held, not yet released
    available: int  # released, not yet paid (negative: owed back after a refund)
    in_transit: int  # reserved by an open payout
    paid_out: int  # paid payouts, less what was reversed
    lifetime_earnings: int  # coach share of every earning, less refunds before release
    next_release_at: datetime | None
    next_release_amount: int


@dataclass(frozen=True, slots=True)
class EarningView:
    id: int
    booking_id: int | None
    coaching_session_id: int | None
    currency: str
    gross: int
    platform_fee: int
    amount: int  # coach share
    reduced_before_release: int
    status: str
    available_at: datetime
    released_at: datetime | None
    payout_id: int | None


@dataclass(frozen=True, slots=True)
class PayoutView:
    id: int
    currency: str
    amount: int
    status: str
    stripe_transfer_id: str | None
    created_at: datetime
    settled_at: datetime | None
    failure_code: str | None
    failure_reason: str | None
    waiting_on_platform_funds: bool
    reversed_amount: int
    retry_of: int | None
    earning_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BankPayoutView:
    stripe_payout_id: str
    currency: str
    amount: int
    status: str
    arrival_date: datetime | None
    failure_code: str | None
    failure_message: str | None


_TOTALS = text(
    "SELECT c.currency, "
    "(SELECT COALESCE(sum(amount - reversed_amount), 0) FROM payouts p WHERE p.coach_id = :c "
    "  AND p.currency = c.currency AND p.status = 'paid') AS paid_out, "
    "(SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings e "
    "  WHERE e.coach_id = :c AND e.currency = c.currency) AS lifetime, "
    "(SELECT min(available_at) FROM earnings e WHERE e.coach_id = :c "
    "  AND e.currency = c.currency AND e.status = 'pending') AS next_at "
    "FROM (SELECT DISTINCT currency FROM earnings WHERE coach_id = :c "
    "      UNION SELECT DISTINCT currency FROM payouts WHERE coach_id = :c) c"
)
_NEXT_AMOUNT = text(
    "SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings WHERE coach_id = :c "
    "AND currency = :cur AND status = 'pending' AND available_at = :at"
)


async def coach_balance(db: AsyncSession, coach_id: int) -> list[CurrencyBalance]:
    ledger = await coach_balances(db, coach_id)
    totals = {r.currency: r for r in await db.execute(_TOTALS, {"c": coach_id})}
    out = []
    for cur in sorted(set(ledger) | set(totals)):
        kinds = ledger.get(cur, {})
        row = totals.get(cur)
        next_at = row.next_at if row is not None else None
        next_amount = 0
        if next_at is not None:
            params = {"c": coach_id, "cur": cur, "at": next_at}
            next_amount = int(await db.scalar(_NEXT_AMOUNT, params) or 0)
        out.append(
            CurrencyBalance(
                currency=cur,
                pending=kinds.get("pending", 0),
                available=kinds.get("available", 0),
                in_transit=kinds.get("in_transit", 0),
                paid_out=int(row.paid_out) if row is not None else 0,
                lifetime_earnings=int(row.lifetime) if row is not None else 0,
                next_release_at=next_at,
                next_release_amount=next_amount,
            )
        )
    return out


def _page(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


async def list_earnings(
    db: AsyncSession, coach_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[EarningView]:
    """Newest first; the session comes from the payment's journal transaction."""
    rows = await db.execute(
        text(
            "SELECT e.*, t.coaching_session_id FROM earnings e "
            "LEFT JOIN ledger_transactions t ON t.id = e.payment_transaction_id "
            "WHERE e.coach_id = :c AND (CAST(:before AS bigint) IS NULL OR e.id < :before) "
            "ORDER BY e.id DESC LIMIT :n"
        ),
        {"c": coach_id, "before": before_id, "n": _page(limit)},
    )
    return [
        EarningView(
            id=r.id,
            booking_id=r.booking_id,
            coaching_session_id=r.coaching_session_id,
            currency=r.currency,
            gross=r.gross,
            platform_fee=r.platform_fee,
            amount=r.amount,
            reduced_before_release=r.reduced_before_release,
            status=r.status,
            available_at=r.available_at,
            released_at=r.released_at,
            payout_id=r.payout_id,
        )
        for r in rows
    ]


async def list_payouts(
    db: AsyncSession, coach_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[PayoutView]:
    """Newest first, each with the earnings it paid for (none for a failed one:
    those went back to be paid by a later payout)."""
    rows = await db.execute(
        text(
            "SELECT p.*, COALESCE((SELECT array_agg(e.id ORDER BY e.id) FROM earnings e "
            "  WHERE e.payout_id = p.id), '{}') AS earning_ids "
            "FROM payouts p WHERE p.coach_id = :c "
            "AND (CAST(:before AS bigint) IS NULL OR p.id < :before) ORDER BY p.id DESC LIMIT :n"
        ),
        {"c": coach_id, "before": before_id, "n": _page(limit)},
    )
    return [
        PayoutView(
            id=r.id,
            currency=r.currency,
            amount=r.amount,
            status=r.status,
            stripe_transfer_id=r.stripe_transfer_id,
            created_at=r.created_at,
            settled_at=r.settled_at,
            failure_code=r.failure_code,
            failure_reason=r.failure_reason,
            waiting_on_platform_funds=r.status == "waiting_funds",
            reversed_amount=r.reversed_amount,
            retry_of=r.retry_of,
            earning_ids=list(r.earning_ids),
        )
        for r in rows
    ]


async def list_bank_payouts(
    db: AsyncSession, coach_id: int, *, limit: int = 20
) -> list[BankPayoutView]:
    rows = await db.execute(
        text(
            "SELECT * FROM connect_payouts WHERE coach_id = :c "
            "ORDER BY event_created DESC, id DESC LIMIT :n"
        ),
        {"c": coach_id, "n": _page(limit)},
    )
    return [
        BankPayoutView(
            stripe_payout_id=r.stripe_payout_id,
            currency=r.currency,
            amount=r.amount,
            status=r.status,
            arrival_date=r.arrival_date,
            failure_code=r.failure_code,
            failure_message=r.failure_message,
        )
        for r in rows
    ]
