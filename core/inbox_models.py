"""The webhook inbox table: every Stripe event, stored once before it is acted on."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class InboxStatus(StrEnum):
    """pending -> processed | ignored | failed; failed -> (retried) ... | parked.

    ``parked``: a poison event (core.inbox_failures has the rule): nothing
    retries it until an admin replays it (core.inbox_admin.replay). The values
    are checked by the table's CHECK constraint (migrations 0002, 0009)."""

    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"
    PARKED = "parked"


PENDING = InboxStatus.PENDING
PROCESSED = InboxStatus.PROCESSED
FAILED = InboxStatus.FAILED
IGNORED = InboxStatus.IGNORED
PARKED = InboxStatus.PARKED
# Shared by the two writers of the inbox (core.inbox in a transaction, and the
# receiver's batched INSERT in core.inbox_receive), whatever their parameter style.
STORED_COLUMNS = (
    "stripe_event_id, endpoint, type, account, livemode, payload,"
    " received_at, status, attempts, next_attempt_at"
)
# Besides status and processed_at, what marking an event done (processed or ignored) sets.
DONE_SET = "attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL"
OWED = f"status IN ('{PENDING}', '{FAILED}')"


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_type", "type", "received_at"),
        Index(
            "ix_webhook_events_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'failed')"),
        ),
        Index(
            "ix_webhook_events_failed",
            "status",
            text("last_attempt_at DESC"),
            text("id DESC"),
            postgresql_where=text("status IN ('failed', 'parked')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    endpoint: Mapped[str] = mapped_column(String(16))  # platform | connect
    type: Mapped[str] = mapped_column(String(255))
    account: Mapped[str | None] = mapped_column(String(255))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column()
    processed_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # every try, ever
    last_error: Mapped[str | None] = mapped_column(Text)  # redacted (core.inbox_failures)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    # The current failure streak (since receipt or the last replay), by kind.
    handler_failures: Mapped[int] = mapped_column(Integer, default=0)
    transient_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column()
    replays: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    parked_at: Mapped[datetime | None] = mapped_column()


def unpark_values(at: datetime) -> dict[str, Any]:
    """A parked event made pending again, due at ``at``, with a fresh failure streak."""
    return {
        "status": PENDING,
        "parked_at": None,
        "next_attempt_at": at,
        "handler_failures": 0,
        "transient_failures": 0,
        "failing_since": None,
        "replays": WebhookEvent.replays + 1,
    }
