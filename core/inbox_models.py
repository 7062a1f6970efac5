"""The webhook inbox table: every Stripe event, stored once before it is acted on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

PENDING = "pending"
PROCESSED = "processed"
FAILED = "failed"
IGNORED = "ignored"
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
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
