"""Payouts: our transfers to coaches, their attempt log, and the coaches' bank payouts.

Revision ID: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE payouts (
    id                      BIGSERIAL PRIMARY KEY,
    coach_id                BIGINT NOT NULL,
    currency                VARCHAR(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    amount                  BIGINT NOT NULL CHECK (amount > 0),
    status                  VARCHAR(16) NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'waiting_funds', 'paid', 'failed')),
    destination             VARCHAR(255) NOT NULL,
    stripe_transfer_id      TEXT,
    key_generation          INTEGER NOT NULL DEFAULT 0 CHECK (key_generation >= 0),
    attempts                INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_attempt_at         TIMESTAMPTZ,
    next_attempt_at         TIMESTAMPTZ,
    last_error              TEXT,
    failure_code            TEXT,
    failure_reason          TEXT,
    reversed_amount         BIGINT NOT NULL DEFAULT 0
                            CHECK (reversed_amount >= 0 AND reversed_amount <= amount),
    retry_of                BIGINT REFERENCES payouts (id),
    reserve_transaction_id  BIGINT REFERENCES ledger_transactions (id),
    settle_transaction_id   BIGINT REFERENCES ledger_transactions (id),
    failure_transaction_id  BIGINT REFERENCES ledger_transactions (id),
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at              TIMESTAMPTZ,
    failed_at               TIMESTAMPTZ,
    CONSTRAINT uq_payouts_stripe_transfer_id UNIQUE (stripe_transfer_id),
    CONSTRAINT ck_payouts_paid_has_transfer CHECK (status <> 'paid' OR stripe_transfer_id IS NOT NULL)
);
-- At most one open payout per coach and currency: the money of a coach is
-- never in two transfers at once, whatever runs concurrently.
CREATE UNIQUE INDEX uq_payouts_open ON payouts (coach_id, currency)
    WHERE status IN ('pending', 'waiting_funds');
CREATE UNIQUE INDEX uq_payouts_retry_of ON payouts (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX ix_payouts_coach ON payouts (coach_id, currency, created_at DESC);
CREATE INDEX ix_payouts_due ON payouts (next_attempt_at, id)
    WHERE status IN ('pending', 'waiting_funds');

CREATE TABLE payout_attempts (
    id                  BIGSERIAL PRIMARY KEY,
    payout_id           BIGINT NOT NULL REFERENCES payouts (id),
    idempotency_key     TEXT NOT NULL,
    outcome             VARCHAR(16) NOT NULL
                        CHECK (outcome IN ('paid', 'found', 'unknown', 'waiting_funds', 'refused', 'error')),
    error_code          TEXT,
    message             TEXT,
    stripe_transfer_id  TEXT,
    at                  TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_payout_attempts_payout_id ON payout_attempts (payout_id, id);

CREATE TABLE connect_payouts (
    id                  BIGSERIAL PRIMARY KEY,
    stripe_payout_id    VARCHAR(255) NOT NULL,
    stripe_account_id   VARCHAR(255) NOT NULL,
    coach_id            BIGINT,
    amount              BIGINT NOT NULL,
    currency            VARCHAR(3) NOT NULL,
    status              VARCHAR(16) NOT NULL,
    arrival_date        TIMESTAMPTZ,
    failure_code        TEXT,
    failure_message     TEXT,
    event_created       TIMESTAMPTZ NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_connect_payouts_stripe_payout_id UNIQUE (stripe_payout_id)
);
CREATE INDEX ix_connect_payouts_coach ON connect_payouts (coach_id, created_at DESC);

-- The release job claims due earnings by due time; 0001 has the partial index.
-- The payout job links the available, unpaid earnings of one coach.
CREATE INDEX ix_earnings_unpaid ON earnings (coach_id, currency)
    WHERE status = 'available' AND payout_id IS NULL;
"""

DROP = """
DROP INDEX IF EXISTS ix_earnings_unpaid;
DROP TABLE IF EXISTS connect_payouts;
DROP TABLE IF EXISTS payout_attempts;
DROP TABLE IF EXISTS payouts;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
