"""Payouts (our transfers to a coach's Connect account), their attempt log,
and the coach's own Stripe payouts to their bank (``connect_payouts``).

The schema comes from migration 0005.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, make_transient_to_detached, mapped_column

import ledger.models  # noqa: F401  (the foreign keys name ledger_transactions)
from core.db import Base
from core.states import check


class PayoutStatus(StrEnum):
    PENDING = "pending"
    WAITING_FUNDS = "waiting_funds"
    PAID = "paid"
    FAILED = "failed"


_P = PayoutStatus
# What each payout status may become (docs/design.md's diagram is generated from
# it). A new payout is pending (reserve); settle / settle_one pay it, fail ends
# it, wait_for_funds and leave_pending keep it open for the next run. A failed
# payout stays failed: retry_payout makes a new row. Migration 0016's trigger
# holds the same table for the SQL writers (a test keeps them equal).
PAYOUT_INITIAL = frozenset({_P.PENDING})
PAYOUT_ALLOWED: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    _P.PENDING: frozenset({_P.PENDING, _P.WAITING_FUNDS, _P.PAID, _P.FAILED}),
    _P.WAITING_FUNDS: frozenset({_P.PENDING, _P.WAITING_FUNDS, _P.PAID, _P.FAILED}),
    _P.PAID: frozenset(),
    _P.FAILED: frozenset(),
}

PENDING = PayoutStatus.PENDING
WAITING_FUNDS = PayoutStatus.WAITING_FUNDS
PAID = PayoutStatus.PAID
FAILED = PayoutStatus.FAILED
# Open: the money is reserved and the transfer not settled (at most one per
# coach and currency: uq_payouts_open).
OPEN_STATUSES = (PENDING, WAITING_FUNDS)


def check_payout_transition(from_status: str, to_status: str) -> None:
    check("payout", PAYOUT_ALLOWED, from_status, to_status)


class Payout(Base):
    """One transfer of a coach's available balance in one currency.

    Its statuses move as ``PAYOUT_ALLOWED`` says. At most one open (pending / waiting_funds)
    payout per coach and currency (a partial unique index), so a coach's
    money is never in two transfers at once.
    """

    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_coach", "coach_id", "currency", text("created_at DESC")),
        Index(
            "ix_payouts_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status IN ('pending', 'waiting_funds')"),
        ),
        Index(
            "uq_payouts_open",
            "coach_id",
            "currency",
            unique=True,
            postgresql_where=text("status IN ('pending', 'waiting_funds')"),
        ),
        Index(
            "uq_payouts_retry_of",
            "retry_of",
            unique=True,
            postgresql_where=text("retry_of IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    destination: Mapped[str] = mapped_column(String(255))  # acct_..., fixed at creation
    stripe_transfer_id: Mapped[str | None] = mapped_column(Text, unique=True)
    # Bumped after a definite refusal (balance_insufficient): Stripe stores
    # the refusal under the key, so the next attempt needs a new one.
    key_generation: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    reversed_amount: Mapped[int] = mapped_column(default=0)
    retry_of: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    reserve_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    settle_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    failure_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    settled_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()

    def idempotency_key(self) -> str:
        base = f"payout:{self.id}"
        return base if self.key_generation == 0 else f"{base}:{self.key_generation}"


class PayoutAttempt(Base):
    """Every call made to Stripe for a payout and what came of it."""

    __tablename__ = "payout_attempts"
    __table_args__ = (Index("ix_payout_attempts_payout_id", "payout_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    idempotency_key: Mapped[str] = mapped_column(Text)
    # paid | found | unknown | waiting_funds | refused | error
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    stripe_transfer_id: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column()


class ConnectPayout(Base):
    """A payout from the coach's Stripe balance to their bank (``po_...``)."""

    __tablename__ = "connect_payouts"
    __table_args__ = (Index("ix_connect_payouts_coach", "coach_id", text("created_at DESC")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_payout_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_account_id: Mapped[str] = mapped_column(String(255))
    coach_id: Mapped[int | None] = mapped_column()
    amount: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    arrival_date: Mapped[datetime | None] = mapped_column()
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    # Stripe time of the event we hold: an older event never overwrites it.
    event_created: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


def attach(db: AsyncSession, payout: Payout) -> Payout:
    """The row as written or read, made a persistent (clean) object of this session
    without the ORM reading it back or writing it again."""
    make_transient_to_detached(payout)
    db.add(payout)
    return payout


def reserved_payout(
    *,
    payout_id: int,
    coach_id: int,
    currency: str,
    amount: int,
    destination: str,
    reserve_transaction_id: int,
    now: datetime,
    retry_of: int | None = None,
) -> Payout:
    """The row a reserve just inserted, as an ORM object with every column set
    (attached detached-clean by the caller: no SELECT to load it back)."""
    return Payout(
        id=payout_id, coach_id=coach_id, currency=currency, amount=amount, status=PENDING,
        destination=destination, stripe_transfer_id=None, key_generation=0, attempts=0,
        last_attempt_at=None, next_attempt_at=None, last_error=None, failure_code=None,
        failure_reason=None, reversed_amount=0, retry_of=retry_of,
        reserve_transaction_id=reserve_transaction_id, settle_transaction_id=None,
        failure_transaction_id=None, created_at=now, updated_at=now, settled_at=None,
        failed_at=None,
    )  # fmt: skip
