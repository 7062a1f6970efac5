"""Coach profiles (fee rate, payout settings) and their Stripe Connect accounts.

The checks mirror connect.service's validation so that a bad value cannot be
stored by any path (admin API, a script, a manual UPDATE).

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE coach_profiles (
    user_id                BIGINT PRIMARY KEY REFERENCES users (id),
    display_name           VARCHAR(200),
    fee_bps                BIGINT NOT NULL DEFAULT 2000 CHECK (fee_bps BETWEEN 0 AND 10000),
    hold_hours             BIGINT NOT NULL DEFAULT 72 CHECK (hold_hours BETWEEN 0 AND 2160),
    payout_schedule        VARCHAR(16) NOT NULL DEFAULT 'daily'
                           CHECK (payout_schedule IN ('instant', 'daily', 'weekly', 'monthly')),
    -- {"usd": 1000}: minimum payout per currency in minor units; absent = 0.
    minimum_payout         JSONB NOT NULL DEFAULT '{}'::jsonb
                           CHECK (jsonb_typeof(minimum_payout) = 'object'),
    payouts_paused         BOOLEAN NOT NULL DEFAULT FALSE,
    payouts_paused_reason  TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE connect_accounts (
    id                           BIGSERIAL PRIMARY KEY,
    coach_id                     BIGINT NOT NULL REFERENCES coach_profiles (user_id),
    stripe_account_id            VARCHAR(255) NOT NULL,
    country                      VARCHAR(2),
    default_currency             VARCHAR(3),
    charges_enabled              BOOLEAN NOT NULL DEFAULT FALSE,
    payouts_enabled              BOOLEAN NOT NULL DEFAULT FALSE,
    details_submitted            BOOLEAN NOT NULL DEFAULT FALSE,
    transfers_capability         VARCHAR(16),
    requirements_currently_due   JSONB NOT NULL DEFAULT '[]'::jsonb,
    requirements_past_due        JSONB NOT NULL DEFAULT '[]'::jsonb,
    requirements_eventually_due  JSONB NOT NULL DEFAULT '[]'::jsonb,
    disabled_reason              TEXT,
    status                       VARCHAR(24) NOT NULL DEFAULT 'onboarding'
                                 CHECK (status IN ('onboarding', 'pending_verification',
                                                   'restricted', 'active', 'disabled')),
    synced_at                    TIMESTAMPTZ,
    raw                          JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- One Connect account per coach, and one coach per Stripe account.
    CONSTRAINT uq_connect_accounts_coach_id UNIQUE (coach_id),
    CONSTRAINT uq_connect_accounts_stripe_account_id UNIQUE (stripe_account_id)
);
"""

DROP = """
DROP TABLE IF EXISTS connect_accounts;
DROP TABLE IF EXISTS coach_profiles;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
