"""Outbox events, webhook endpoints, deliveries and their attempts. Schema: migration 0013.

The events are written by triggers only (see the migration); Python reads them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

import core.users  # noqa: F401  (created_by's foreign key names users)
from core.db import Base
from core.outbox.signing import active_secrets


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to send: new, retrying, or claimed and in flight
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the retry window


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a 2xx
    FAILED = "failed"  # any other status
    TIMEOUT = "timeout"
    REFUSED = "refused"  # the address is not allowed (checked at send time)
    ERROR = "error"  # connection refused, reset, TLS, DNS


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_time", "occurred_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column()


class Endpoint(Base):
    __tablename__ = "outbox_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    ordered: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)
    # Still signs (a second signature) until it expires: receivers move over.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    # First failure since the last success; the endpoint is disabled after N days of it.
    failing_since: Mapped[datetime | None] = mapped_column()
    disabled_at: Mapped[datetime | None] = mapped_column()
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()

    def signing_secrets(self, now: datetime) -> list[str]:
        return active_secrets(
            self.secret, self.previous_secret, self.previous_secret_expires_at, now
        )


class Delivery(Base):
    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_outbox_deliveries_endpoint_event"),
        Index("ix_outbox_deliveries_event", "event_id"),
        Index(
            "ix_outbox_deliveries_head",
            "endpoint_id",
            "occurred_at",
            "event_id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_outbox_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("outbox_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    retry_from: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()


class Attempt(Base):
    """One HTTP attempt of a delivery: the endpoint's delivery log."""

    __tablename__ = "outbox_attempts"
    __table_args__ = (
        Index("ix_outbox_attempts_delivery", "delivery_id"),
        Index("ix_outbox_attempts_endpoint", "endpoint_id", text("id DESC")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("outbox_deliveries.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
