"""Coaching sessions, bookings, their audit trail (booking_events) and refunds.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE coaching_sessions (
    id                   BIGSERIAL PRIMARY KEY,
    coach_id             BIGINT NOT NULL REFERENCES coach_profiles (user_id),
    title                VARCHAR(200) NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description          TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    starts_at            TIMESTAMPTZ NOT NULL,
    ends_at              TIMESTAMPTZ NOT NULL,
    price                BIGINT NOT NULL CHECK (price > 0),
    currency             VARCHAR(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    capacity             INTEGER CHECK (capacity IS NULL OR capacity >= 1),
    refund_window_hours  INTEGER NOT NULL CHECK (refund_window_hours >= 0),
    status               VARCHAR(16) NOT NULL DEFAULT 'published'
                         CHECK (status IN ('published', 'cancelled')),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ck_coaching_sessions_times CHECK (ends_at > starts_at)
);
CREATE INDEX ix_coaching_sessions_starts_at ON coaching_sessions (starts_at, id);
CREATE INDEX ix_coaching_sessions_coach ON coaching_sessions (coach_id, starts_at);

CREATE TABLE bookings (
    id                   BIGSERIAL PRIMARY KEY,
    coaching_session_id  BIGINT NOT NULL REFERENCES coaching_sessions (id),
    mentee_id            BIGINT NOT NULL REFERENCES users (id),
    coach_id             BIGINT NOT NULL,
    status               VARCHAR(24) NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'paid', 'failed', 'cancelled',
                                           'refunded', 'partially_refunded')),
    amount               BIGINT NOT NULL CHECK (amount > 0),
    currency             VARCHAR(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    fee_bps              INTEGER NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    attempt              INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    checkout_session_id  VARCHAR(255),
    checkout_url         TEXT,
    hold_expires_at      TIMESTAMPTZ,
    payment_intent_id    VARCHAR(255),
    charge_id            VARCHAR(255),
    paid_at              TIMESTAMPTZ,
    amount_refunded      BIGINT NOT NULL DEFAULT 0
                         CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_bookings_checkout_session_id UNIQUE (checkout_session_id),
    CONSTRAINT uq_bookings_payment_intent_id UNIQUE (payment_intent_id)
);
-- One active booking per mentee per session; cancelled / refunded ones do not count.
CREATE UNIQUE INDEX uq_bookings_active_mentee ON bookings (coaching_session_id, mentee_id)
    WHERE status IN ('pending', 'paid', 'failed', 'partially_refunded');
CREATE INDEX ix_bookings_mentee ON bookings (mentee_id, created_at);
-- The seat count under the session lock.
CREATE INDEX ix_bookings_seats ON bookings (coaching_session_id, status);

CREATE TABLE booking_events (
    id             BIGSERIAL PRIMARY KEY,
    booking_id     BIGINT NOT NULL REFERENCES bookings (id),
    at             TIMESTAMPTZ NOT NULL,
    actor_kind     VARCHAR(16) NOT NULL CHECK (actor_kind IN ('user', 'stripe', 'system')),
    actor_user_id  BIGINT REFERENCES users (id),
    cause          TEXT NOT NULL,
    from_status    VARCHAR(24),
    to_status      VARCHAR(24) NOT NULL,
    detail         JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ix_booking_events_booking ON booking_events (booking_id, at, id);

CREATE TABLE refunds (
    id                     BIGSERIAL PRIMARY KEY,
    booking_id             BIGINT NOT NULL REFERENCES bookings (id),
    stripe_refund_id       VARCHAR(255) NOT NULL,
    payment_intent_id      VARCHAR(255) NOT NULL,
    amount                 BIGINT NOT NULL CHECK (amount > 0),
    currency               VARCHAR(3) NOT NULL,
    platform_fee_part      BIGINT NOT NULL CHECK (platform_fee_part >= 0),
    coach_part             BIGINT NOT NULL CHECK (coach_part >= 0),
    coach_account_kind     VARCHAR(16) NOT NULL CHECK (coach_account_kind IN ('pending', 'available')),
    source                 VARCHAR(16) NOT NULL CHECK (source IN ('api', 'auto', 'stripe')),
    requested_by           BIGINT REFERENCES users (id),
    reason                 TEXT,
    status                 VARCHAR(16) NOT NULL,
    ledger_transaction_id  BIGINT REFERENCES ledger_transactions (id),
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_refunds_stripe_refund_id UNIQUE (stripe_refund_id),
    CONSTRAINT ck_refunds_split CHECK (platform_fee_part + coach_part = amount)
);
CREATE INDEX ix_refunds_booking ON refunds (booking_id);
"""

DROP = """
DROP TABLE IF EXISTS refunds;
DROP TABLE IF EXISTS booking_events;
DROP TABLE IF EXISTS bookings;
DROP TABLE IF EXISTS coaching_sessions;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
