"""Coach profiles (fee rate, payout settings) and their Stripe Connect accounts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import core.users  # noqa: F401  (see below)
from connect.status import AccountStatus
from core.db import Base

# ``core.users`` above: the profile's foreign key names users.id, so that table
# must be in the metadata for any flush of a profile, whichever package loaded
# this module (the payout job pauses coaches without importing it otherwise).


class PauseSource(StrEnum):
    """Who paused a coach's payouts (``coach_profiles.payouts_paused_by``)."""

    ADMIN = "admin"  # a person (the audit log names them)
    SYSTEM = "system"  # a job or webhook, e.g. a failed bank payout
    TRANSFER_REFUSALS = "transfer_refusals"  # Stripe refused transfers N times in a row


class PayoutSchedule(StrEnum):
    """How often a coach is paid (``coach_profiles.payout_schedule``; payouts/schedule.py
    says when each is due). The migration 0003 CHECK lists the same values."""

    INSTANT = "instant"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class CoachProfile(Base):
    """Keyed by the coach's user id, which is also the ledger's ``coach_id``."""

    __tablename__ = "coach_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    fee_bps: Mapped[int] = mapped_column()
    hold_hours: Mapped[int] = mapped_column()
    payout_schedule: Mapped[str] = mapped_column(String(16), default=PayoutSchedule.DAILY)
    # {"usd": 1000, ...}: minimum payout per currency, minor units; absent = 0.
    minimum_payout: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
    payouts_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_paused_reason: Mapped[str | None] = mapped_column(Text)
    payouts_paused_by: Mapped[str | None] = mapped_column(String(24))  # PauseSource
    # Transfers Stripe refused in a row (reset by a paid one), and when the next
    # may be tried: payouts/refusals.py writes them, connect.profile reads them.
    payout_refusals: Mapped[int] = mapped_column(Integer, default=0)
    payout_retry_at: Mapped[datetime | None] = mapped_column()
    payout_last_refusal: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class ConnectAccount(Base):
    __tablename__ = "connect_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("coach_profiles.user_id"), unique=True)
    stripe_account_id: Mapped[str] = mapped_column(String(255), unique=True)
    country: Mapped[str | None] = mapped_column(String(2))
    default_currency: Mapped[str | None] = mapped_column(String(3))
    charges_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    transfers_capability: Mapped[str | None] = mapped_column(String(16))
    requirements_currently_due: Mapped[list[str]] = mapped_column(JSONB, default=list)
    requirements_past_due: Mapped[list[str]] = mapped_column(JSONB, default=list)
    requirements_eventually_due: Mapped[list[str]] = mapped_column(JSONB, default=list)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), default=AccountStatus.ONBOARDING)
    # Stripe's `created`/event time of the state we hold, so an older event
    # never overwrites a newer state.
    synced_at: Mapped[datetime | None] = mapped_column()
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
