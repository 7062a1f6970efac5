"""The ledger against Stripe's balance transactions for a period.

Stripe's balance transaction is the unit of money moving on the platform's
Stripe balance: ``net`` is what it did to the balance (a charge's amount less
its fee, a refund, a dispute withdrawal with its fee, a transfer). The ledger
records the same money in ``stripe_balance`` legs, possibly over several
journal transactions (a session payment and its processing fee). So:

* each ledger transaction carrying Stripe ids is linked to at most one balance
  transaction, by the first of its ids that names one (a balance transaction
  id, else the ``source`` of one: charge, refund, dispute, transfer);
* a balance transaction is matched when the ``stripe_balance`` legs of the
  ledger transactions linked to it add up to its ``net``, an amount mismatch
  when they do not, missing in the ledger when nothing links to it;
* a ledger transaction linked to nothing joins the charge that another ledger
  transaction of the same PaymentIntent linked to (the session payment is
  posted under the PaymentIntent id, its processing fee under the charge's
  balance transaction id);
* a ledger transaction in the period that touches ``stripe_balance`` but links
  to no balance transaction is missing at Stripe.

The caller (the api layer) fetches the balance transactions through the
gateway; this module reads only ledger tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.stripe_types import BalanceTransaction

# Metadata keys that may hold a Stripe id worth linking on, best first.
_CHARGE_TYPES = frozenset({"charge", "payment"})
_META_KEYS = ("balance_transaction", "balance_transaction_id", "charge", "charge_id", "dispute_id")


@dataclass(frozen=True, slots=True)
class LedgerSide:
    transaction_id: int
    type: str
    currency: str
    cash: int  # the stripe_balance legs
    stripe_ids: tuple[str, ...]  # link candidates, best first
    occurred_at: datetime
    payment_intent: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """The balance transactions of one Stripe object (usually one; a dispute withdrawn
    and reinstated has two) against the ledger transactions linked to them."""

    key: str  # the Stripe object (a balance transaction's source, else its id)
    balance_transactions: tuple[BalanceTransaction, ...]
    ledger_transaction_ids: tuple[int, ...]
    ledger_amount: int  # sum of the linked stripe_balance legs

    @property
    def stripe_amount(self) -> int:
        return sum(bt.net for bt in self.balance_transactions)

    @property
    def currency(self) -> str:
        return self.balance_transactions[0].currency

    @property
    def difference(self) -> int:
        return self.ledger_amount - self.stripe_amount


@dataclass(frozen=True, slots=True)
class Reconciliation:
    matched: list[Match] = field(default_factory=list)
    amount_mismatches: list[Match] = field(default_factory=list)
    missing_in_ledger: list[BalanceTransaction] = field(default_factory=list)
    missing_at_stripe: list[LedgerSide] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.amount_mismatches or self.missing_in_ledger or self.missing_at_stripe)


def _ids(obj: Any, pi: Any, tr: Any, meta: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = [str(meta[k]) for k in _META_KEYS[:2] if meta.get(k)]
    found += [str(v) for v in (obj, tr) if v]
    found += [str(meta[k]) for k in _META_KEYS[2:] if meta.get(k)]
    if pi:
        found.append(str(pi))
    return tuple(dict.fromkeys(found))


_SELECT = (
    "SELECT t.id, t.type, e.currency, t.occurred_at, t.stripe_object_id, "
    "t.stripe_payment_intent_id, t.stripe_transfer_id, t.metadata, "
    "COALESCE(SUM(e.amount) FILTER (WHERE a.owner_type = 'platform' "
    "AND a.kind = 'stripe_balance'), 0) "
    "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
    "JOIN ledger_accounts a ON a.id = e.account_id "
)
_GROUP = " GROUP BY t.id, e.currency"


def _side(r: Sequence[Any]) -> LedgerSide:
    return LedgerSide(
        transaction_id=r[0],
        type=r[1],
        currency=r[2],
        occurred_at=r[3],
        stripe_ids=_ids(r[4], r[5], r[6], dict(r[7] or {})),
        cash=int(r[8]),
        payment_intent=r[5],
    )


async def ledger_side(
    db: AsyncSession,
    *,
    start: datetime | None,
    end: datetime | None,
    stripe_ids: Iterable[str] = (),
) -> list[LedgerSide]:
    """Ledger transactions touching the Stripe balance in the period, plus any (of any
    time) that carry one of ``stripe_ids``, so a posting just across the period's edge
    still finds its balance transaction."""
    conds: list[str] = []
    params: dict[str, Any] = {}
    if start is not None:
        conds.append("t.occurred_at >= :start")
        params["start"] = start
    if end is not None:
        conds.append("t.occurred_at < :end")
        params["end"] = end
    period = " AND ".join(conds) or "TRUE"
    ids = list(stripe_ids)
    by_id = ""
    if ids:
        params["ids"] = ids
        by_id = (
            " OR t.stripe_object_id = ANY(:ids) OR t.stripe_transfer_id = ANY(:ids)"
            " OR t.metadata ->> 'balance_transaction' = ANY(:ids)"
            " OR t.metadata ->> 'balance_transaction_id' = ANY(:ids)"
            " OR t.metadata ->> 'charge_id' = ANY(:ids) OR t.metadata ->> 'charge' = ANY(:ids)"
            # and the payment posted under the PaymentIntent of a fee found by id
            " OR (t.type = 'session_payment' AND t.stripe_payment_intent_id IN (SELECT"
            " x.stripe_payment_intent_id FROM ledger_transactions x"
            " WHERE x.stripe_object_id = ANY(:ids)))"
        )
    sql = (
        f"{_SELECT} WHERE (({period}) AND EXISTS (SELECT 1 FROM ledger_entries se "
        "JOIN ledger_accounts sa ON sa.id = se.account_id WHERE se.transaction_id = t.id "
        f"AND sa.owner_type = 'platform' AND sa.kind = 'stripe_balance')){by_id}{_GROUP} "
        "ORDER BY t.occurred_at, t.id"
    )
    return [_side(r) for r in await db.execute(text(sql), params)]


def reconcile(
    balance_transactions: Sequence[BalanceTransaction], ledger: Sequence[LedgerSide]
) -> Reconciliation:
    """Pure matching; see the module docstring for the rules."""
    groups: dict[str, list[BalanceTransaction]] = {}
    index: dict[str, str] = {}  # a balance transaction id or a source -> group key
    for bt in balance_transactions:
        key = bt.source or bt.id
        groups.setdefault(key, []).append(bt)
        index[bt.id] = key
        index[key] = key
    linked: dict[str, list[LedgerSide]] = {}
    result = Reconciliation()
    unlinked: list[LedgerSide] = []
    for side in ledger:
        found = next((index[i] for i in side.stripe_ids if i in index), None)
        if found is None or groups[found][0].currency != side.currency:
            unlinked.append(side)
            continue
        linked.setdefault(found, []).append(side)
    # A payment posted under its PaymentIntent id alone (the charge id unknown to
    # the ledger) joins the charge its processing fee, same PaymentIntent, linked to.
    by_intent = {
        side.payment_intent: key
        for key, sides in linked.items()
        if groups[key][0].type in _CHARGE_TYPES
        for side in sides
        if side.payment_intent
    }
    for side in unlinked:
        found = by_intent.get(side.payment_intent) if side.payment_intent else None
        if found is not None and groups[found][0].currency == side.currency:
            linked.setdefault(found, []).append(side)
        elif side.cash:
            result.missing_at_stripe.append(side)
    for key, bts in groups.items():
        sides = linked.get(key)
        if not sides:
            result.missing_in_ledger.extend(bts)
            continue
        match = Match(
            key, tuple(bts), tuple(s.transaction_id for s in sides), sum(s.cash for s in sides)
        )
        (result.matched if match.difference == 0 else result.amount_mismatches).append(match)
    return result


async def reconcile_period(
    db: AsyncSession,
    balance_transactions: Sequence[BalanceTransaction],
    *,
    start: datetime | None,
    end: datetime | None,
) -> Reconciliation:
    ids = {i for bt in balance_transactions for i in (bt.id, bt.source) if i}
    side = await ledger_side(db, start=start, end=end, stripe_ids=ids)
    return reconcile(balance_transactions, side)
