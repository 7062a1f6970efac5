"""Ledger tables. The schema (and its triggers) comes from migration 0001."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.states import check


class EarningStatus(StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    PAID = "paid"
    CANCELLED = "cancelled"


_E = EarningStatus
# What each earning status may become (docs/design.md's diagram is generated
# from it). pending -> available: the release; pending -> cancelled: nothing
# left of the share (refunded or disputed before release: take_share, or the
# release finding it empty), cancelled -> pending: a share given back (a refund
# failed, a dispute won: return_share); available -> paid: its payout settled.
# Migration 0016's trigger holds the same table for the SQL writers.
EARNING_INITIAL = frozenset({_E.PENDING})
EARNING_ALLOWED: dict[EarningStatus, frozenset[EarningStatus]] = {
    _E.PENDING: frozenset({_E.AVAILABLE, _E.CANCELLED}),
    _E.AVAILABLE: frozenset({_E.PAID}),
    _E.PAID: frozenset(),
    _E.CANCELLED: frozenset({_E.CANCELLED, _E.PENDING}),
}


def check_earning_transition(from_status: str, to_status: str) -> None:
    check("earning", EARNING_ALLOWED, from_status, to_status)


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint(
            "owner_type", "owner_id", "kind", "currency", name="uq_ledger_accounts_owner"
        ),
        UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    slots: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column()


class BalanceSlot(Base):
    __tablename__ = "ledger_balance_slots"

    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    balance: Mapped[int] = mapped_column(default=0)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        Index("ix_ledger_transactions_occurred_at", "occurred_at", "id"),
        Index(
            "ix_ledger_transactions_coach",
            "coach_id",
            "occurred_at",
            postgresql_where=text("coach_id IS NOT NULL"),
        ),
        Index(
            "ix_ledger_transactions_booking",
            "booking_id",
            postgresql_where=text("booking_id IS NOT NULL"),
        ),
        Index(
            "ix_ledger_transactions_payout",
            "payout_id",
            postgresql_where=text("payout_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(Text, unique=True)
    legs_signature: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    coach_id: Mapped[int | None] = mapped_column()
    payer_id: Mapped[int | None] = mapped_column()
    coaching_session_id: Mapped[int | None] = mapped_column()
    booking_id: Mapped[int | None] = mapped_column()
    payout_id: Mapped[int | None] = mapped_column()
    stripe_object_id: Mapped[str | None] = mapped_column(Text)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(Text)
    stripe_transfer_id: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)


class Entry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_transaction_id", "transaction_id"),
        Index(
            "ix_ledger_entries_account_slot_time",
            "account_id",
            "slot",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_include=["balance_after"],
        ),
        ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name="fk_ledger_entries_account_currency",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    account_id: Mapped[int] = mapped_column()
    slot: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column()
    # The balance of (account, slot) right after this entry: a point-in-time
    # balance is the latest entry per slot, one index lookup each.
    balance_after: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()


class Earning(Base):
    """A coach's share of one payment, held until ``available_at``.

    Lives in the ledger package because both ``sessions`` (creates, refunds)
    and ``payouts`` (releases, pays) work on it and neither may import the other.
    """

    __tablename__ = "earnings"
    __table_args__ = (
        UniqueConstraint("booking_id", name="earnings_booking_id_key"),
        Index(
            "ix_earnings_due",
            "available_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_earnings_next_release",
            "coach_id",
            "currency",
            "available_at",
            postgresql_include=["amount", "reduced_before_release"],
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_earnings_unpaid",
            "coach_id",
            "currency",
            postgresql_where=text("status = 'available' AND payout_id IS NULL"),
        ),
        Index(
            "ix_earnings_payout_id",
            "payout_id",
            postgresql_where=text("payout_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column(index=True)
    booking_id: Mapped[int | None] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    gross: Mapped[int] = mapped_column()
    platform_fee: Mapped[int] = mapped_column()
    amount: Mapped[int] = mapped_column()  # the coach share
    # Refunded or disputed while still pending: the release moves only the rest.
    reduced_before_release: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime] = mapped_column()
    # EarningStatus, moved as EARNING_ALLOWED says.
    status: Mapped[str] = mapped_column(String(16), default=EarningStatus.PENDING)
    payment_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    release_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    released_at: Mapped[datetime | None] = mapped_column()
    payout_id: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
