"""Shapes of the finance views for JSON, CSV and the pages; query parameter parsing.

JSON amounts stay integers in minor units; each sits next to a ``*_display``
string formatted with the currency's decimals (JPY 0, USD 2, KWD 3).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from core.errors import InvalidInput
from core.money import check_currency, currency_exponent, format_amount
from ledger.posting import TxType
from ledger.reconciliation import LedgerSide, Match, Reconciliation
from ledger.report_summary import SummaryRow
from ledger.reports import TransactionRow, TrialBalanceLine

MAX_PARAM = 64
TX_TYPES = frozenset(t.value for t in TxType)
SUMMARY_AMOUNTS = (
    "gross_volume", "platform_fees", "processing_fees", "dispute_losses",
    "net_platform_revenue", "refunds", "disputes", "payouts_made", "payouts_pending",
    "coach_pending", "coach_available", "coach_balances_outstanding",
)  # fmt: skip
TX_AMOUNTS = ("amount", "platform_fee", "coach_payout", "processing_fee")
TX_COLUMNS = (
    "id", "occurred_at", "type", "status", "currency", "amount", "platform_fee",
    "coach_payout", "processing_fee", "payment_intent", "transfer", "stripe_object",
    "session_id", "booking_id", "payer_id", "coach_id", "payout_id",
)  # fmt: skip


# -- display ----------------------------------------------------------------------


def display_amount(amount: int, currency: str) -> str:
    """For people: ``123456789, 'usd'`` -> ``'1,234,567.89 USD'``, ``9000, 'jpy'`` ->
    ``'9,000 JPY'``; exact (integer arithmetic), decimals from the currency's exponent.
    The API's ``*_display`` fields stay ``core.money.format_amount`` (no separators)."""
    exp = currency_exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    fraction = f".{frac:0{exp}d}" if exp else ""
    return f"{sign}{whole:,}{fraction} {currency.upper()}"


# -- parameters -----------------------------------------------------------------


def parse_time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 date or datetime; a date or a naive time is taken as UTC."""
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAM:
        raise InvalidInput("too long", field=field)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 date or datetime: {value!r}", field=field) from None
    if not 1970 <= when.year <= 9000:
        raise InvalidInput("out of range", field=field)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_period(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    s, e = parse_time(start, "from"), parse_time(end, "to")
    if s and e and s >= e:
        raise InvalidInput("must be before 'to'", field="from")
    return s, e


def parse_currency(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) != 3:
        raise InvalidInput("a 3-letter ISO 4217 code", field="currency")
    try:
        return check_currency(value.lower())
    except InvalidInput:
        raise InvalidInput(f"unknown currency {value!r}", field="currency") from None


def parse_type(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in TX_TYPES:
        raise InvalidInput(f"one of {', '.join(sorted(TX_TYPES))}", field="type")
    return value


def wants_csv(accept: str | None, fmt: str | None) -> bool:
    if fmt is not None and fmt not in ("csv", "json"):
        raise InvalidInput("csv or json", field="format")
    return fmt == "csv" or (fmt is None and "text/csv" in (accept or "").lower())


# -- JSON shapes ------------------------------------------------------------------


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime | date) else v


def with_display(d: dict[str, Any], currency: str, fields: Iterable[str]) -> dict[str, Any]:
    for f in fields:
        d[f"{f}_display"] = format_amount(d[f], currency)
    return d


def summary_json(row: SummaryRow) -> dict[str, Any]:
    d = {k: _iso(v) for k, v in asdict(row).items()}
    return with_display(d, row.currency, SUMMARY_AMOUNTS)


def transaction_json(row: TransactionRow) -> dict[str, Any]:
    d = {k: _iso(getattr(row, k)) for k in TX_COLUMNS}
    d["description"] = row.description
    return with_display(d, row.currency, TX_AMOUNTS)


def trial_line_json(line: TrialBalanceLine) -> dict[str, Any]:
    d = asdict(line)
    d["account"] = (
        f"{'platform' if line.owner_type == 'platform' else f'coach:{line.owner_id}'}"
        f"/{line.kind}/{line.currency}"
    )
    d["debit"] = max(line.balance, 0)
    d["credit"] = max(-line.balance, 0)
    return with_display(d, line.currency, ("balance", "debit", "credit"))


def _match_json(m: Match) -> dict[str, Any]:
    d = {
        "key": m.key,
        "currency": m.currency,
        "balance_transactions": [bt.id for bt in m.balance_transactions],
        "stripe_types": sorted({bt.type for bt in m.balance_transactions}),
        "ledger_transaction_ids": list(m.ledger_transaction_ids),
        "stripe_amount": m.stripe_amount,
        "ledger_amount": m.ledger_amount,
        "difference": m.difference,
    }
    return with_display(d, m.currency, ("stripe_amount", "ledger_amount", "difference"))


def _side_json(s: LedgerSide) -> dict[str, Any]:
    d = {
        "ledger_transaction_id": s.transaction_id,
        "type": s.type,
        "currency": s.currency,
        "amount": s.cash,
        "stripe_ids": list(s.stripe_ids),
        "occurred_at": s.occurred_at.isoformat(),
    }
    return with_display(d, s.currency, ("amount",))


def reconciliation_json(rec: Reconciliation) -> dict[str, Any]:
    missing = [
        with_display(
            {
                "balance_transaction": bt.id,
                "type": bt.type,
                "source": bt.source,
                "currency": bt.currency,
                "amount": bt.amount,
                "fee": bt.fee,
                "net": bt.net,
                "created": datetime.fromtimestamp(bt.created, UTC).isoformat(),
            },
            bt.currency,
            ("amount", "fee", "net"),
        )
        for bt in rec.missing_in_ledger
    ]
    return {
        "ok": rec.ok,
        "counts": {
            "matched": len(rec.matched),
            "amount_mismatches": len(rec.amount_mismatches),
            "missing_in_ledger": len(rec.missing_in_ledger),
            "missing_at_stripe": len(rec.missing_at_stripe),
        },
        "matched": [_match_json(m) for m in rec.matched],
        "amount_mismatches": [_match_json(m) for m in rec.amount_mismatches],
        "missing_in_ledger": missing,
        "missing_at_stripe": [_side_json(s) for s in rec.missing_at_stripe],
    }


# -- CSV ------------------------------------------------------------------------


def csv_line(values: Sequence[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(["" if v is None else _iso(v) for v in values])
    return buf.getvalue().encode()


def csv_of(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> bytes:
    return b"".join([csv_line(columns), *(csv_line([r.get(c) for c in columns]) for r in rows)])


async def csv_stream(
    header: Sequence[str], rows: AsyncIterator[Sequence[Any]], *, chunk: int = 200
) -> AsyncIterator[bytes]:
    """Header, then rows in chunks of ``chunk`` lines (fewer, larger writes)."""
    yield csv_line(header)
    buf: list[bytes] = []
    async for row in rows:
        buf.append(csv_line(row))
        if len(buf) >= chunk:
            yield b"".join(buf)
            buf = []
    if buf:
        yield b"".join(buf)


RECONCILIATION_COLUMNS = (
    "result", "currency", "stripe_ids", "balance_transactions", "ledger_transaction_ids",
    "stripe_amount", "ledger_amount", "difference",
)  # fmt: skip


def reconciliation_csv(out: dict[str, Any]) -> bytes:
    """One line per matched group, difference, or missing item."""
    flat: list[dict[str, Any]] = []
    for result in ("matched", "amount_mismatches"):
        for m in out[result]:
            flat.append(
                {
                    **m,
                    "result": result,
                    "stripe_ids": m["key"],
                    "ledger_transaction_ids": " ".join(map(str, m["ledger_transaction_ids"])),
                    "balance_transactions": " ".join(m["balance_transactions"]),
                }
            )
    for bt in out["missing_in_ledger"]:
        flat.append(
            {
                **bt,
                "result": "missing_in_ledger",
                "stripe_ids": bt["source"],
                "stripe_amount": bt["net"],
                "balance_transactions": bt["balance_transaction"],
            }
        )
    for side in out["missing_at_stripe"]:
        flat.append(
            {
                **side,
                "result": "missing_at_stripe",
                "ledger_amount": side["amount"],
                "ledger_transaction_ids": side["ledger_transaction_id"],
                "stripe_ids": " ".join(side["stripe_ids"]),
            }
        )
    return csv_of(flat, RECONCILIATION_COLUMNS)
