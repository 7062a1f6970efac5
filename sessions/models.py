"""Coaching sessions, bookings, their audit trail, refunds (migration 0004) and refund
intents (0008)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import ledger.models  # noqa: F401  (refunds' foreign key names ledger_transactions)
from core.db import Base
from core.states import check


class SessionStatus(StrEnum):
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class BookingStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


_B = BookingStatus
# What each booking status may become, as the code moves it (docs/design.md has
# the diagram, generated from this table by scripts/state_diagrams.py). Every
# status may stay itself: a booking_events row with from = to records an event
# that changed no status (a dispute, a refund refused, a duplicate payment
# refunded).
BOOKING_INITIAL = frozenset({_B.PENDING})
BOOKING_ALLOWED: dict[BookingStatus, frozenset[BookingStatus]] = {
    # paid: record_payment; failed: a declined Checkout, or a retry's Checkout
    # refused; cancelled: by the mentee, an expired Checkout, a lapsed hold, the
    # session cancelled; refunded: auto_refund of a payment not honoured.
    _B.PENDING: frozenset({_B.PENDING, _B.PAID, _B.FAILED, _B.CANCELLED, _B.REFUNDED}),
    # pending: retry_booking; paid: the same Checkout paid after a decline.
    _B.FAILED: frozenset({_B.FAILED, _B.PENDING, _B.PAID, _B.CANCELLED, _B.REFUNDED}),
    # refunded: a late payment refunded automatically.
    _B.CANCELLED: frozenset({_B.CANCELLED, _B.REFUNDED}),
    # apply_refund.
    _B.PAID: frozenset({_B.PAID, _B.PARTIALLY_REFUNDED, _B.REFUNDED}),
    # apply_refund; paid: reverse_failed_refund.
    _B.PARTIALLY_REFUNDED: frozenset({_B.PARTIALLY_REFUNDED, _B.PAID, _B.REFUNDED}),
    # reverse_failed_refund.
    _B.REFUNDED: frozenset({_B.REFUNDED, _B.PAID, _B.PARTIALLY_REFUNDED}),
}


def check_booking_transition(from_status: str, to_status: str) -> None:
    check("booking", BOOKING_ALLOWED, from_status, to_status)


# "One active booking per mentee per session": a failed booking is still the
# mentee's booking (they retry it), a cancelled or fully refunded one is not.
ACTIVE_STATUSES = (
    BookingStatus.PENDING,
    BookingStatus.PAID,
    BookingStatus.FAILED,
    BookingStatus.PARTIALLY_REFUNDED,
)
# Statuses that hold a seat for good (PENDING holds one until its checkout expires).
SEATED_STATUSES = (BookingStatus.PAID, BookingStatus.PARTIALLY_REFUNDED)


class CoachingSession(Base):
    __tablename__ = "coaching_sessions"
    __table_args__ = (
        Index("ix_coaching_sessions_coach", "coach_id", "starts_at"),
        Index("ix_coaching_sessions_starts_at", "starts_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("coach_profiles.user_id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    price: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    capacity: Mapped[int | None] = mapped_column(Integer)
    refund_window_hours: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.PUBLISHED.value)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_seats", "coaching_session_id", "status"),
        Index("ix_bookings_mentee", "mentee_id", "created_at"),
        Index(
            "uq_bookings_active_mentee",
            "coaching_session_id",
            "mentee_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'paid', 'failed', 'partially_refunded')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coaching_session_id: Mapped[int] = mapped_column(ForeignKey("coaching_sessions.id"))
    mentee_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    coach_id: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(24), default=BookingStatus.PENDING.value)
    # Fixed at booking time: a later price or fee change does not touch this booking.
    amount: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    fee_bps: Mapped[int] = mapped_column(Integer)
    # Checkout attempt number: 1 for the first Checkout Session, +1 per retry.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    hold_expires_at: Mapped[datetime | None] = mapped_column()
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    charge_id: Mapped[str | None] = mapped_column(String(255))
    paid_at: Mapped[datetime | None] = mapped_column()
    amount_refunded: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class BookingEvent(Base):
    """Audit row per booking state change: when, who, why, from and to."""

    __tablename__ = "booking_events"
    __table_args__ = (Index("ix_booking_events_booking", "booking_id", "at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    at: Mapped[datetime] = mapped_column()
    actor_kind: Mapped[str] = mapped_column(String(16))  # user / stripe / system
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cause: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_booking", "booking_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    stripe_refund_id: Mapped[str] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    platform_fee_part: Mapped[int] = mapped_column()
    coach_part: Mapped[int] = mapped_column()
    # Where the coach part came back from: pending (before release) or available.
    coach_account_kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # api / auto / stripe
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    ledger_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column()


class IntentStatus(StrEnum):
    OPEN = "open"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundIntent(Base):
    """A refund asked of Stripe, recorded (and committed) before the call.

    The Stripe idempotency key is derived from its id, so every replay of the
    same request sends the same key and Stripe answers with the same refund.
    """

    __tablename__ = "refund_intents"
    __table_args__ = (
        Index("ix_refund_intents_booking", "booking_id", "created_at"),
        Index(
            "ix_refund_intents_stripe_refund",
            "stripe_refund_id",
            postgresql_where=text("stripe_refund_id IS NOT NULL"),
        ),
        Index(
            "uq_refund_intents_open",
            "booking_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index(
            "uq_refund_intents_client_key",
            "booking_id",
            "client_key",
            unique=True,
            postgresql_where=text("client_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    source: Mapped[str] = mapped_column(String(16))  # api / auto
    requested_amount: Mapped[int | None] = mapped_column()  # None: all that remains
    amount: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    client_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=IntentStatus.OPEN.value)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    settled_at: Mapped[datetime | None] = mapped_column()
