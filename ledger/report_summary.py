"""Finance summary by period and currency, and the payouts as the ledger sees them.

Flows are sums of legs over ``occurred_at`` in the period (reports may sum
history; balances on the hot path never do). Balances at the end of a period
(coach balances outstanding, payouts in transit) are the opening balance plus
the flows up to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.money import check_currency
from ledger.reports import payout_state

Group = Literal["day", "week", "month", "none"]
GROUPS: tuple[str, ...] = ("day", "week", "month", "none")

_PLAT = "a.owner_type = 'platform' AND a.kind = "
_CASH = _PLAT + "'stripe_balance'"
# Column name -> the legs it sums.
_FLOWS: dict[str, str] = {
    "gross": f"t.type = 'session_payment' AND {_CASH}",
    "fee_revenue": _PLAT + "'fee_revenue'",
    "processing": _PLAT + "'processing_fees'",
    "refund_cash": f"t.type = 'refund' AND {_CASH}",
    "dispute_cash": f"t.type = 'dispute' AND {_CASH}",
    "dispute_losses": _PLAT + "'dispute_losses'",
    "payout_cash": f"t.type IN ('payout', 'payout_settled', 'payout_reversal') AND {_CASH}",
    "pending": "a.owner_type = 'coach' AND a.kind = 'pending'",
    "available": "a.owner_type = 'coach' AND a.kind = 'available'",
    "in_transit": "a.owner_type = 'coach' AND a.kind = 'in_transit'",
}
_BALANCES = ("pending", "available", "in_transit")


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One currency (and period); every amount in minor units of ``currency``."""

    currency: str
    period_start: date | None
    payments: int  # number of session payments
    gross_volume: int
    platform_fees: int  # net of the fee given back on refunds
    processing_fees: int
    dispute_losses: int
    net_platform_revenue: int  # platform_fees - processing_fees - dispute_losses
    refunds: int
    disputes: int  # net amount withdrawn by disputes (won ones come back)
    payouts_made: int  # transferred to coaches, net of reversals
    payouts_pending: int  # in transit at the end of the period
    coach_pending: int  # owed to coaches at the end of the period, by state
    coach_available: int
    coach_balances_outstanding: int


def _bucket(group: str) -> str:
    if group not in GROUPS:
        raise InvalidInput("group must be one of day, week, month, none", field="group")
    if group == "none":
        return "NULL::date"
    return f"date_trunc('{group}', t.occurred_at AT TIME ZONE 'UTC')::date"


async def summary(
    db: AsyncSession,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    currency: str | None = None,
    group: str = "none",
) -> list[SummaryRow]:
    """Rows per currency (and per period when grouped), oldest period first."""
    bucket = _bucket(group)
    if currency is not None:
        check_currency(currency)
    if start and end and start >= end:
        raise InvalidInput("'from' must be before 'to'", field="from")
    conds: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if currency is not None:
        conds.append("e.currency = :c")
        params["c"] = currency
    opening: dict[str, dict[str, int]] = {}
    if start is not None:
        opening = await _opening(db, start, conds, params)
    if start is not None:
        conds.append("t.occurred_at >= :start")
        params["start"] = start
    if end is not None:
        conds.append("t.occurred_at < :end")
        params["end"] = end
    sums = ", ".join(
        f"COALESCE(SUM(e.amount) FILTER (WHERE {cond}), 0) AS {name}"
        for name, cond in _FLOWS.items()
    )
    rows = await db.execute(
        text(
            f"SELECT e.currency, {bucket} AS bucket, {sums}, "
            "COUNT(DISTINCT t.id) FILTER (WHERE t.type = 'session_payment') AS payments "
            "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
            "JOIN ledger_accounts a ON a.id = e.account_id "
            f"WHERE {' AND '.join(conds)} GROUP BY e.currency, bucket "
            "ORDER BY e.currency, bucket NULLS FIRST"
        ),
        params,
    )
    out: list[SummaryRow] = []
    running = {c: dict(v) for c, v in opening.items()}
    seen: set[str] = set()
    for r in rows.mappings():
        cur = r["currency"]
        seen.add(cur)
        bal = running.setdefault(cur, dict.fromkeys(_BALANCES, 0))
        for kind in _BALANCES:
            bal[kind] += int(r[kind])
        out.append(_make(cur, r["bucket"], r, bal))
    for cur, bal in opening.items():  # balances carried in, no movement in the period
        if cur not in seen and any(bal.values()):
            out.append(_make(cur, None, dict.fromkeys([*_FLOWS, "payments"], 0), bal))
    return out


def _make(cur: str, bucket: date | None, r: Any, bal: dict[str, int]) -> SummaryRow:
    fees, processing = -int(r["fee_revenue"]), int(r["processing"])
    losses = int(r["dispute_losses"])
    owed = {k: -v for k, v in bal.items()}  # coach accounts are liabilities
    return SummaryRow(
        currency=cur,
        period_start=bucket,
        payments=int(r["payments"]),
        gross_volume=int(r["gross"]),
        platform_fees=fees,
        processing_fees=processing,
        dispute_losses=losses,
        net_platform_revenue=fees - processing - losses,
        refunds=-int(r["refund_cash"]),
        disputes=-int(r["dispute_cash"]),
        payouts_made=-int(r["payout_cash"]),
        payouts_pending=owed["in_transit"],
        coach_pending=owed["pending"],
        coach_available=owed["available"],
        coach_balances_outstanding=sum(owed.values()),
    )


async def _opening(
    db: AsyncSession, start: datetime, conds: list[str], params: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """Coach balances by kind as of ``start`` (by occurred_at), per currency."""
    sums = ", ".join(
        f"COALESCE(SUM(e.amount) FILTER (WHERE {_FLOWS[k]}), 0) AS {k}" for k in _BALANCES
    )
    rows = await db.execute(
        text(
            f"SELECT e.currency, {sums} FROM ledger_transactions t "
            "JOIN ledger_entries e ON e.transaction_id = t.id "
            "JOIN ledger_accounts a ON a.id = e.account_id "
            f"WHERE {' AND '.join(conds)} AND a.owner_type = 'coach' AND t.occurred_at < :start "
            "GROUP BY e.currency"
        ),
        {**params, "start": start},
    )
    return {r[0]: {k: int(v) for k, v in zip(_BALANCES, r[1:], strict=True)} for r in rows}


def totals(rows: list[SummaryRow]) -> list[SummaryRow]:
    """Per-currency totals of grouped rows; end balances are those of the last period."""
    out: dict[str, SummaryRow] = {}
    flows = (
        "payments", "gross_volume", "platform_fees", "processing_fees", "dispute_losses",
        "net_platform_revenue", "refunds", "disputes", "payouts_made",
    )  # fmt: skip
    for row in rows:
        prev = out.get(row.currency)
        if prev is None:
            out[row.currency] = replace(row, period_start=None)
            continue
        added = {f: getattr(prev, f) + getattr(row, f) for f in flows}
        out[row.currency] = replace(row, period_start=None, **added)
    return list(out.values())


# -- payouts as the ledger sees them ------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerPayout:
    payout_id: int
    coach_id: int | None
    currency: str
    amount: int
    state: str  # in_transit, paid, failed, reversed
    transfer: str | None
    started_at: datetime
    updated_at: datetime
    earning_ids: list[int]


async def ledger_payouts(
    db: AsyncSession, *, coach_id: int | None = None, limit: int = 500
) -> list[LedgerPayout]:
    """Payouts newest first: the amount moved into transit, the outcome, the earnings paid."""
    where, params = "t.payout_id IS NOT NULL", {"limit": limit}
    if coach_id is not None:
        where += " AND t.coach_id = :coach"
        params["coach"] = coach_id
    rows = await db.execute(
        text(
            "SELECT t.payout_id, max(t.coach_id), e.currency, "
            "COALESCE(-SUM(e.amount) FILTER (WHERE t.type = 'payout' AND a.owner_type = 'coach' "
            "AND a.kind = 'in_transit'), 0), array_agg(DISTINCT t.type), "
            "max(t.stripe_transfer_id), min(t.occurred_at), max(t.occurred_at), "
            "(SELECT COALESCE(array_agg(er.id ORDER BY er.id), '{}') FROM earnings er "
            " WHERE er.payout_id = t.payout_id) "
            "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
            "JOIN ledger_accounts a ON a.id = e.account_id "
            f"WHERE {where} GROUP BY t.payout_id, e.currency "
            "ORDER BY min(t.occurred_at) DESC, t.payout_id DESC LIMIT :limit"
        ),
        params,
    )
    return [
        LedgerPayout(r[0], r[1], r[2], int(r[3]), payout_state(set(r[4])), r[5], r[6], r[7], r[8])
        for r in rows
    ]
