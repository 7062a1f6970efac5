"""Posting journal transactions: validated here, written in one round trip by ``ledger_post``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import check_amount, check_currency
from ledger.errors import (
    AccountNotFound,
    CurrencyMismatch,
    EmptyTransaction,
    IdempotencyConflict,
    LedgerImmutable,
    UnbalancedTransaction,
)


class TxType(StrEnum):
    SESSION_PAYMENT = "session_payment"
    PROCESSING_FEE = "processing_fee"
    HOLD_RELEASE = "hold_release"
    PAYOUT = "payout"
    PAYOUT_SETTLED = "payout_settled"
    PAYOUT_FAILED = "payout_failed"
    PAYOUT_REVERSAL = "payout_reversal"
    REFUND = "refund"
    DISPUTE = "dispute"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class Leg:
    account_id: int
    amount: int  # debit positive, credit negative
    currency: str


@dataclass(frozen=True, slots=True)
class PostResult:
    transaction_id: int
    created: bool  # False: a replay of the same key with the same legs


ATTRS = frozenset(
    {
        "coach_id",
        "payer_id",
        "coaching_session_id",
        "booking_id",
        "payout_id",
        "stripe_object_id",
        "stripe_payment_intent_id",
        "stripe_transfer_id",
        "description",
        "metadata",
    }
)

_POST = text("SELECT transaction_id, created FROM ledger_post(:type, :key, :at, :legs, :attrs)")

_SQLSTATE_ERRORS: dict[str, type[Exception]] = {
    "CP001": UnbalancedTransaction,
    "CP002": IdempotencyConflict,
    "CP003": LedgerImmutable,
    "CP004": AccountNotFound,
    "CP005": CurrencyMismatch,
    "23503": AccountNotFound,
}


def validate_legs(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise EmptyTransaction("a ledger transaction needs at least two legs")
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        check_amount(leg.amount, allow_negative=True)
        check_currency(leg.currency)
        if not isinstance(leg.account_id, int) or isinstance(leg.account_id, bool):
            raise AccountNotFound(f"bad account id {leg.account_id!r}")
        totals[leg.currency] += leg.amount
    off = {c: t for c, t in totals.items() if t != 0}
    if off:
        raise UnbalancedTransaction(f"legs do not sum to zero per currency: {off}")


def translate_db_error(exc: DBAPIError) -> Exception | None:
    code = getattr(exc.orig, "sqlstate", None)
    cls = _SQLSTATE_ERRORS.get(code or "")
    if cls is None:
        return None
    diag = getattr(exc.orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc.orig)
    return cls(message)


async def post(
    db: AsyncSession,
    *,
    type: TxType | str,
    idempotency_key: str,
    legs: Sequence[Leg],
    occurred_at: datetime,
    **attrs: Any,
) -> PostResult:
    """Post one balanced, idempotent journal transaction.

    The same key with the same legs returns the first transaction
    (``created=False``); the same key with other legs raises
    ``IdempotencyConflict``. The database re-checks the balance at commit.
    """
    validate_legs(legs)
    if not idempotency_key or len(idempotency_key) > 255:
        raise EmptyTransaction("an idempotency key of 1 to 255 characters is needed")
    unknown = set(attrs) - ATTRS
    if unknown:
        raise TypeError(f"unknown transaction attributes: {sorted(unknown)}")
    payload = [
        {"account_id": leg.account_id, "amount": leg.amount, "currency": leg.currency}
        for leg in legs
    ]
    params = {
        "type": str(type),
        "key": idempotency_key,
        "at": occurred_at,
        "legs": json.dumps(payload),
        "attrs": json.dumps({k: v for k, v in attrs.items() if v is not None}),
    }
    try:
        row = (await db.execute(_POST, params)).one()
    except DBAPIError as exc:
        domain = translate_db_error(exc)
        if domain is None:
            raise
        raise domain from exc
    return PostResult(int(row[0]), bool(row[1]))
