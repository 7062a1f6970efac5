"""Users (provisioned on first sight), the audit log and the Stripe webhook inbox.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    sub           VARCHAR(255) NOT NULL CHECK (length(sub) BETWEEN 1 AND 255),
    role          VARCHAR(16) NOT NULL CHECK (role IN ('mentee', 'coach', 'finance', 'admin')),
    email         TEXT,
    display_name  TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_users_sub UNIQUE (sub)
);

CREATE TABLE audit_log (
    id             BIGSERIAL PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    actor_user_id  BIGINT REFERENCES users (id),
    actor_kind     VARCHAR(16) NOT NULL CHECK (actor_kind IN ('user', 'stripe', 'system')),
    action         VARCHAR(64) NOT NULL,
    entity_type    VARCHAR(64) NOT NULL,
    entity_id      VARCHAR(255) NOT NULL,
    before         JSONB,
    after          JSONB,
    cause          TEXT,
    CONSTRAINT ck_audit_log_user_actor CHECK (actor_kind <> 'user' OR actor_user_id IS NOT NULL)
);
CREATE INDEX ix_audit_log_entity ON audit_log (entity_type, entity_id, at);

-- Every Stripe event is stored once (unique event id) before it is acted on.
CREATE TABLE webhook_events (
    id               BIGSERIAL PRIMARY KEY,
    stripe_event_id  VARCHAR(255) NOT NULL,
    endpoint         VARCHAR(16) NOT NULL CHECK (endpoint IN ('platform', 'connect')),
    type             VARCHAR(255) NOT NULL,
    account          VARCHAR(255),
    livemode         BOOLEAN NOT NULL DEFAULT FALSE,
    payload          JSONB NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    processed_at     TIMESTAMPTZ,
    status           VARCHAR(16) NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processed', 'failed', 'ignored')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       TEXT,
    next_attempt_at  TIMESTAMPTZ,
    CONSTRAINT uq_webhook_events_stripe_event_id UNIQUE (stripe_event_id)
);
-- The retry job's scan: only rows still owed work are indexed.
CREATE INDEX ix_webhook_events_due ON webhook_events (next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX ix_webhook_events_type ON webhook_events (type, received_at);
"""

DROP = """
DROP TABLE IF EXISTS webhook_events;
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS users;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
