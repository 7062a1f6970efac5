"""Queries behind the finance endpoints and pages that reach past the ledger:
the payouts table, Stripe's balance transactions, a coach's page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api import finance_views as fv
from api.context import AppContext
from core.errors import InvalidInput
from core.money import format_amount
from ledger.accounts import coach_balances
from ledger.models import Earning
from ledger.reconciliation import reconcile_period
from ledger.reports import TransactionFilter, iter_transactions
from payouts.models import Payout

# Bounds one reconciliation's memory; a larger period is asked to be split.
MAX_BALANCE_TRANSACTIONS = 20_000

PAYOUT_STATES = ("pending", "waiting_funds", "paid", "failed")


async def payouts_view(
    db: AsyncSession,
    *,
    state: str | None = None,
    coach_id: int | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[dict[str, Any]]:
    if state not in (None, "", *PAYOUT_STATES):
        raise InvalidInput(f"one of {', '.join(PAYOUT_STATES)}", field="state")
    q = select(Payout).order_by(Payout.id.desc()).limit(limit)
    if state:
        q = q.where(Payout.status == state)
    if coach_id is not None:
        q = q.where(Payout.coach_id == coach_id)
    if before is not None:
        q = q.where(Payout.id < before)
    payouts = (await db.execute(q)).scalars().all()
    earnings: dict[int, list[dict[str, Any]]] = {}
    if payouts:
        found = await db.execute(
            select(Earning)
            .where(Earning.payout_id.in_([p.id for p in payouts]))
            .order_by(Earning.id)
        )
        for er in found.scalars():
            assert er.payout_id is not None
            earnings.setdefault(er.payout_id, []).append(
                fv.with_display(
                    {
                        "id": er.id,
                        "booking_id": er.booking_id,
                        "gross": er.gross,
                        "platform_fee": er.platform_fee,
                        "amount": er.amount,
                        "currency": er.currency,
                    },
                    er.currency,
                    ("gross", "platform_fee", "amount"),
                )
            )
    return [_payout_json(p, earnings.get(p.id, [])) for p in payouts]


def _payout_json(p: Payout, earnings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "id": p.id,
        "coach_id": p.coach_id,
        "currency": p.currency,
        "amount": p.amount,
        "amount_display": format_amount(p.amount, p.currency),
        "state": p.status,
        "transfer": p.stripe_transfer_id,
        "destination": p.destination,
        "attempts": p.attempts,
        "last_error": p.last_error,
        "failure_reason": p.failure_reason,
        "reversed_amount": p.reversed_amount,
        "created_at": iso(p.created_at),
        "settled_at": iso(p.settled_at),
        "failed_at": iso(p.failed_at),
        "earnings": list(earnings),
    }


async def reconciliation_report(
    db: AsyncSession, ctx: AppContext, start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    """Fetch Stripe's balance transactions for the period and match them to the ledger."""
    bts = []
    async for bt in ctx.gateway.iter_balance_transactions(
        created_gte=int(start.timestamp()) if start else None,
        created_lt=int(end.timestamp()) if end else None,
    ):
        bts.append(bt)
        if len(bts) > MAX_BALANCE_TRANSACTIONS:
            raise InvalidInput(
                f"more than {MAX_BALANCE_TRANSACTIONS} balance transactions: narrow the period",
                field="from",
            )
    rec = await reconcile_period(db, bts, start=start, end=end)
    out = fv.reconciliation_json(rec)
    out.update(
        {
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
            "checked_at": datetime.now(UTC).isoformat(),
        }
    )
    return out


@dataclass
class CoachPage:
    coach_id: int
    balances: dict[str, dict[str, int]]  # currency -> pending/available/in_transit (owed, +)
    next_release: dict[str, Any] | None
    payouts: list[dict[str, Any]]
    earnings: list[dict[str, Any]]
    # (period label, currency) -> coach share earned, from the ledger's postings
    earned: dict[str, dict[str, int]] = field(default_factory=dict)


async def coach_page(
    db: AsyncSession,
    coach_id: int,
    *,
    currency: str | None,
    start: datetime | None,
    end: datetime | None,
    max_rows: int = 5000,
) -> CoachPage:
    """Balances now; next release; payouts; earnings and money earned in the period."""
    balances = await coach_balances(db, coach_id)
    if currency:
        balances = {c: b for c, b in balances.items() if c == currency}
    due = select(Earning).where(Earning.coach_id == coach_id, Earning.status == "pending")
    if currency:
        due = due.where(Earning.currency == currency)
    first = (await db.execute(due.order_by(Earning.available_at).limit(1))).scalar_one_or_none()
    next_release = None
    if first is not None:
        same_time = await db.execute(
            select(func.count(), func.sum(Earning.amount - Earning.reduced_before_release)).where(
                Earning.coach_id == coach_id,
                Earning.status == "pending",
                Earning.currency == first.currency,
                Earning.available_at == first.available_at,
            )
        )
        count, amount = same_time.one()
        next_release = {
            "at": first.available_at,
            "currency": first.currency,
            "amount": int(amount or 0),
            "display": format_amount(int(amount or 0), first.currency),
            "earnings": int(count),
        }
    payouts = [
        p for p in await payouts_view(db, coach_id=coach_id, limit=50)
        if not currency or p["currency"] == currency
    ]  # fmt: skip
    q = select(Earning).where(Earning.coach_id == coach_id).order_by(Earning.id.desc()).limit(50)
    if currency:
        q = q.where(Earning.currency == currency)
    earnings = [_earning_json(e) for e in (await db.execute(q)).scalars()]
    earned: dict[str, dict[str, int]] = {}
    filters = TransactionFilter(
        type="session_payment", coach_id=coach_id, currency=currency, start=start, end=end
    )
    n = 0
    async for row in iter_transactions(db, filters):
        day = row.occurred_at.astimezone(UTC).date().isoformat()
        per_cur = earned.setdefault(row.currency, {})
        per_cur[day] = per_cur.get(day, 0) + row.coach_payout
        n += 1
        if n >= max_rows:  # a page, not an export: the latest periods are enough
            break
    return CoachPage(coach_id, balances, next_release, payouts, earnings, earned)


def _earning_json(e: Earning) -> dict[str, Any]:
    return fv.with_display(
        {
            "id": e.id,
            "booking_id": e.booking_id,
            "currency": e.currency,
            "gross": e.gross,
            "platform_fee": e.platform_fee,
            "amount": e.amount,
            "status": e.status,
            "available_at": e.available_at,
            "payout_id": e.payout_id,
        },
        e.currency,
        ("gross", "platform_fee", "amount"),
    )


def sum_rows(rows: Sequence[dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in rows)


async def paid_out(db: AsyncSession, coach_id: int) -> dict[str, int]:
    """Lifetime paid out per currency: the sum of paid payouts (net of reversals)."""
    rows = await db.execute(
        select(Payout.currency, func.sum(Payout.amount - Payout.reversed_amount))
        .where(Payout.coach_id == coach_id, Payout.status == "paid")
        .group_by(Payout.currency)
    )
    return {c: int(v or 0) for c, v in rows}


async def payouts_by_state(
    db: AsyncSession, *, start: datetime | None, end: datetime | None, currency: str | None
) -> list[dict[str, Any]]:
    """Count and amount of payouts created in the period, per state and currency."""
    q = select(Payout.status, Payout.currency, func.count(), func.sum(Payout.amount)).group_by(
        Payout.status, Payout.currency
    )
    if start is not None:
        q = q.where(Payout.created_at >= start)
    if end is not None:
        q = q.where(Payout.created_at < end)
    if currency is not None:
        q = q.where(Payout.currency == currency)
    rows = await db.execute(q.order_by(Payout.currency, Payout.status))
    return [
        {"state": s, "currency": c, "count": int(n), "amount": int(a),
         "display": format_amount(int(a), c)}
        for s, c, n, a in rows
    ]  # fmt: skip
