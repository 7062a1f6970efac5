"""Read side of the ledger for finance staff: the Transaction view and the trial balance.

Everything here reads only ledger tables. The Transaction view derives, per
journal transaction, the figures finance staff work with from its legs, by
account kind (sign convention in ``ledger.accounts``: debit positive):

* ``amount``: the effect on the platform's Stripe balance (``stripe_balance``
  leg: +gross for a payment, -refund for a refund, -transfer for a payout
  settlement); a transaction that does not touch it (hold release, payout
  start) shows the amount it moved (its debits).
* ``platform_fee``: ``-fee_revenue`` leg (negative when a refund gives fee back).
* ``coach_payout``: ``-(coach legs)``, the change in what coaches are owed
  (the coach share of a payment); for moves between a coach's own accounts
  (release, payout) the amount moved.
* ``processing_fee``: the ``processing_fees`` leg.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.money import check_currency

MAX_PAGE = 500
# Types whose coach legs only move money between one coach's own accounts.
_INTERNAL_COACH_MOVES = frozenset(
    {"hold_release", "payout", "payout_settled", "payout_failed", "payout_reversal"}
)


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    type: str | None = None
    coach_id: int | None = None
    currency: str | None = None
    start: datetime | None = None  # inclusive, on occurred_at
    end: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        if self.currency is not None:
            check_currency(self.currency)
        if self.start and self.end and self.start >= self.end:
            raise InvalidInput("'from' must be before 'to'", field="from")

    def where(self, alias: str = "t") -> tuple[list[str], dict[str, Any]]:
        """SQL conditions (fixed strings) and their bound parameters."""
        conds: list[str] = []
        params: dict[str, Any] = {}
        if self.type is not None:
            conds.append(f"{alias}.type = :f_type")
            params["f_type"] = self.type
        if self.coach_id is not None:
            conds.append(f"{alias}.coach_id = :f_coach")
            params["f_coach"] = self.coach_id
        if self.start is not None:
            conds.append(f"{alias}.occurred_at >= :f_start")
            params["f_start"] = self.start
        if self.end is not None:
            conds.append(f"{alias}.occurred_at < :f_end")
            params["f_end"] = self.end
        if self.currency is not None:
            conds.append(
                "EXISTS (SELECT 1 FROM ledger_entries fe "
                f"WHERE fe.transaction_id = {alias}.id AND fe.currency = :f_currency)"
            )
            params["f_currency"] = self.currency
        return conds, params


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: int
    type: str
    status: str
    currency: str
    amount: int
    platform_fee: int
    coach_payout: int
    processing_fee: int
    payment_intent: str | None
    transfer: str | None
    stripe_object: str | None
    session_id: int | None
    booking_id: int | None
    payer_id: int | None
    coach_id: int | None
    payout_id: int | None
    occurred_at: datetime
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# -- cursors -----------------------------------------------------------------


def encode_cursor(occurred_at: datetime, key: int | str) -> str:
    """An opaque keyset cursor: a time and the key that breaks its ties."""
    raw = f"{occurred_at.isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_keyed_cursor(cursor: str) -> tuple[datetime, str]:
    """(time, key as text) of ``encode_cursor``; InvalidInput for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, key = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        when = datetime.fromisoformat(at)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidInput("invalid cursor", field="cursor") from None
    if when.tzinfo is None:
        raise InvalidInput("invalid cursor", field="cursor")
    return when, key


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """A Transaction view cursor: (occurred_at, transaction id)."""
    when, key = decode_keyed_cursor(cursor)
    try:
        return when, int(key)
    except ValueError:
        raise InvalidInput("invalid cursor", field="cursor") from None


# -- the Transaction view ----------------------------------------------------

_P = "a.owner_type = 'platform' AND a.kind ="
_LEG_SUMS = f"""
    COALESCE(SUM(e.amount) FILTER (WHERE {_P} 'stripe_balance'), 0),
    COALESCE(SUM(e.amount) FILTER (WHERE {_P} 'fee_revenue'), 0),
    COALESCE(SUM(e.amount) FILTER (WHERE {_P} 'processing_fees'), 0),
    COALESCE(SUM(e.amount) FILTER (WHERE a.owner_type = 'coach'), 0),
    COALESCE(SUM(e.amount) FILTER (WHERE a.owner_type = 'coach' AND e.amount > 0), 0),
    COALESCE(SUM(e.amount) FILTER (WHERE e.amount > 0), 0)
"""

_COLUMNS = (
    "p.id, p.type, p.occurred_at, p.coach_id, p.payer_id, p.coaching_session_id, p.booking_id, "
    "p.payout_id, p.stripe_object_id, p.stripe_payment_intent_id, p.stripe_transfer_id, "
    "p.description, p.metadata"
)


async def list_transactions(
    db: AsyncSession,
    filters: TransactionFilter,
    *,
    after: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> list[TransactionRow]:
    """One page, ordered by (occurred_at, id), after the cursor position ``after``.

    A transaction with legs in two currencies (none is posted today) gives one
    row per currency; the page limit counts transactions.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    conds, params = filters.where("t")
    if after is not None:
        conds.append("(t.occurred_at, t.id) > (:after_at, :after_id)")
        params.update(after_at=after[0], after_id=after[1])
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    entry_currency = "AND e.currency = :f_currency" if filters.currency else ""
    sql = text(
        f"WITH p AS (SELECT t.* FROM ledger_transactions t {where} "
        "ORDER BY t.occurred_at, t.id LIMIT :limit) "
        f"SELECT {_COLUMNS}, e.currency, {_LEG_SUMS} "
        "FROM p JOIN ledger_entries e ON e.transaction_id = p.id "
        f"JOIN ledger_accounts a ON a.id = e.account_id {entry_currency} "
        f"GROUP BY {_COLUMNS}, e.currency ORDER BY p.occurred_at, p.id, e.currency"
    )
    rows = (await db.execute(sql, {**params, "limit": limit})).all()
    statuses = await _statuses(db, rows)
    return [_row(r, statuses) for r in rows]


async def iter_transactions(
    db: AsyncSession, filters: TransactionFilter, *, batch: int = MAX_PAGE
) -> AsyncIterator[TransactionRow]:
    """Every matching row, fetched page by page so memory stays flat for any range."""
    after: tuple[datetime, int] | None = None
    while True:
        page = await list_transactions(db, filters, after=after, limit=batch)
        for row in page:
            yield row
        if not page:
            return
        after = (page[-1].occurred_at, page[-1].id)


def _row(r: Sequence[Any], statuses: dict[int, str]) -> TransactionRow:
    (tx_id, type_, at, coach, payer, sess, booking, payout, obj, pi, tr, desc, meta) = r[:13]
    currency, cash, fee_rev, processing, coach_net, coach_debits, debits = r[13:]
    coach_payout = coach_debits if type_ in _INTERNAL_COACH_MOVES else -coach_net
    return TransactionRow(
        id=tx_id,
        type=type_,
        status=statuses.get(tx_id, "posted"),
        currency=currency,
        amount=int(cash) if cash else int(debits),
        platform_fee=-int(fee_rev),
        coach_payout=int(coach_payout),
        processing_fee=int(processing),
        payment_intent=pi,
        transfer=tr,
        stripe_object=obj,
        session_id=sess,
        booking_id=booking,
        payer_id=payer,
        coach_id=coach,
        payout_id=payout,
        occurred_at=at,
        description=desc,
        metadata=dict(meta or {}),
    )


async def _statuses(db: AsyncSession, rows: Sequence[Sequence[Any]]) -> dict[int, str]:
    """Status from later ledger events: refunds and disputes of a booking, a payout's outcome."""
    bookings = {r[6]: r[0] for r in rows if r[1] == "session_payment" and r[6] is not None}
    payouts = {r[7]: r[0] for r in rows if r[1] == "payout" and r[7] is not None}
    grosses = {r[0]: int(r[14]) for r in rows if r[1] == "session_payment"}
    out: dict[int, str] = {r[0]: "paid" for r in rows if r[1] == "session_payment"}
    out.update({r[0]: "in_transit" for r in rows if r[1] == "payout"})
    if bookings:
        later = await db.execute(
            text(
                "SELECT t.booking_id, t.type, COALESCE(SUM(e.amount) FILTER (WHERE "
                "a.owner_type = 'platform' AND a.kind = 'stripe_balance'), 0), "
                "array_agg(DISTINCT t.metadata ->> 'event') "
                "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
                "JOIN ledger_accounts a ON a.id = e.account_id "
                "WHERE t.booking_id = ANY(:ids) AND t.type IN ('refund', 'dispute') "
                "GROUP BY t.booking_id, t.type"
            ),
            {"ids": list(bookings)},
        )
        refunded: dict[int, int] = {}
        disputed: dict[int, str] = {}
        for booking_id, type_, cash, events in later:
            tx_id = bookings[booking_id]
            if type_ == "dispute":
                # The dispute's last word: lost or won once closed, open before.
                ev = set(events)
                disputed[tx_id] = (
                    "dispute_lost" if "lost" in ev else "dispute_won" if "won" in ev else "disputed"
                )
            elif cash:
                # A refund that failed later is reversed: a net of zero is no refund.
                refunded[tx_id] = -int(cash)
        for tx_id in set(refunded) | set(disputed):
            if refunded.get(tx_id, 0) >= grosses[tx_id]:
                out[tx_id] = "refunded"
            elif tx_id in disputed:
                out[tx_id] = disputed[tx_id]
            else:
                out[tx_id] = "partially_refunded"
    if payouts:
        later = await db.execute(
            text(
                "SELECT payout_id, array_agg(DISTINCT type) FROM ledger_transactions "
                "WHERE payout_id = ANY(:ids) GROUP BY payout_id"
            ),
            {"ids": list(payouts)},
        )
        for payout_id, types in later:
            out[payouts[payout_id]] = payout_state(set(types))
    return out


def payout_state(types: set[str]) -> str:
    """A payout's state as the ledger sees it, from the transaction types posted for it."""
    if "payout_reversal" in types:
        return "reversed"
    if "payout_failed" in types:
        return "failed"
    if "payout_settled" in types:
        return "paid"
    return "in_transit"


# -- trial balance -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialBalanceLine:
    account_id: int
    owner_type: str
    owner_id: int
    kind: str
    currency: str
    balance: int  # debit positive
    entries_sum: int | None  # with verify: the balance recomputed from the entries


@dataclass(frozen=True, slots=True)
class TrialBalance:
    lines: list[TrialBalanceLine]
    totals: dict[str, int]  # currency -> sum of balances, zero when the books balance

    @property
    def balanced(self) -> bool:
        return all(v == 0 for v in self.totals.values()) and all(
            line.entries_sum is None or line.entries_sum == line.balance for line in self.lines
        )


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


async def trial_balance(
    db: AsyncSession, *, currency: str | None = None, verify: bool = False
) -> TrialBalance:
    """Every account's cached balance; ``verify`` also re-adds each account's entries."""
    params: dict[str, Any] = {}
    where = ""
    if currency is not None:
        check_currency(currency)
        where, params["c"] = "WHERE a.currency = :c", currency
    recompute = (
        "(SELECT COALESCE(SUM(le.amount), 0) FROM ledger_entries le WHERE le.account_id = a.id)"
        if verify
        else "NULL"
    )
    rows = await db.execute(
        text(
            "SELECT a.id, a.owner_type, a.owner_id, a.kind, a.currency, "
            f"(SELECT COALESCE(SUM(s.balance), 0) FROM ledger_balance_slots s "
            f"WHERE s.account_id = a.id), {recompute} FROM ledger_accounts a {where} "
            "ORDER BY a.currency, a.owner_type DESC, a.owner_id, a.kind"
        ),
        params,
    )
    lines = [
        TrialBalanceLine(r[0], r[1], r[2], r[3], r[4], int(r[5]), _opt_int(r[6])) for r in rows
    ]
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.currency] = totals.get(line.currency, 0) + line.balance
    return TrialBalance(lines, totals)
