"""Queries behind the finance endpoints and pages that reach past the ledger:
the payouts table, Stripe's balance transactions, transactions newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api import finance_views as fv
from api.context import AppContext
from core.errors import InvalidInput
from core.money import format_amount
from ledger.models import Earning
from ledger.reconciliation import reconcile_period
from ledger.reports import TransactionFilter, TransactionRow, list_transactions
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


async def transactions_newest_first(
    db: AsyncSession,
    filters: TransactionFilter,
    *,
    before: tuple[datetime, int] | None,
    limit: int,
) -> tuple[list[TransactionRow], tuple[datetime, int] | None]:
    """One page of the Transaction view, newest first, older than ``before``; and where
    the next (older) page starts, None on the last one.

    ``ledger.reports.list_transactions`` pages oldest first: the page's transactions are
    found here newest first (one index walk), then read through it from just before the
    oldest of them, so the figures come from the one Transaction view.
    """
    conds, params = filters.where("t")
    if before is not None:
        conds.append("(t.occurred_at, t.id) < (:b_at, :b_id)")
        params.update(b_at=before[0], b_id=before[1])
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    keys = (
        await db.execute(
            text(
                f"SELECT t.occurred_at, t.id FROM ledger_transactions t {where} "
                "ORDER BY t.occurred_at DESC, t.id DESC LIMIT :n"
            ),
            {**params, "n": limit + 1},
        )
    ).all()
    if not keys:
        return [], None
    more = len(keys) > limit
    page = keys[:limit]
    start = (keys[limit][0], keys[limit][1]) if more else None
    rows = await list_transactions(db, filters, after=start, limit=len(page))
    wanted = {k[1] for k in page}
    rows = [r for r in rows if r.id in wanted]
    rows.sort(key=lambda r: (r.occurred_at, r.id), reverse=True)
    oldest = page[-1]
    return rows, ((oldest[0], oldest[1]) if more else None)
