"""Refund intents (a refund request recorded before Stripe is called) and mentees' Stripe Customers.

A refund request is a ``refund_intents`` row committed before the Stripe
call; the Stripe idempotency key is derived from its id
(``coachpay:refund-intent:<id>``), and the outcome (the Stripe refund, or
the refusal) is written on it after. A retried request finds the row and
replays it, so an answer lost after Stripe refunded never makes a second
refund. At most one intent per booking is open at a time, and a client's
``Idempotency-Key`` names one intent per booking.

``users.stripe_customer_id``: the mentee's Stripe Customer, created once
(idempotency key from the user id) and passed on every Checkout Session.

Revision ID: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE refund_intents (
    id                BIGSERIAL PRIMARY KEY,
    booking_id        BIGINT NOT NULL REFERENCES bookings (id),
    source            VARCHAR(16) NOT NULL CHECK (source IN ('api', 'auto')),
    -- What was asked: NULL = "all that remains"; ``amount`` is what that came to.
    requested_amount  BIGINT CHECK (requested_amount IS NULL OR requested_amount > 0),
    amount            BIGINT NOT NULL CHECK (amount > 0),
    currency          VARCHAR(3) NOT NULL,
    reason            TEXT,
    actor_user_id     BIGINT REFERENCES users (id),
    client_key        VARCHAR(200),
    status            VARCHAR(16) NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'succeeded', 'failed')),
    stripe_refund_id  VARCHAR(255),
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    settled_at        TIMESTAMPTZ,
    CONSTRAINT ck_refund_intents_settled CHECK ((status = 'open') = (settled_at IS NULL))
);
-- One refund in flight per booking: a second request waits for (or replays) the first.
CREATE UNIQUE INDEX uq_refund_intents_open ON refund_intents (booking_id) WHERE status = 'open';
CREATE UNIQUE INDEX uq_refund_intents_client_key ON refund_intents (booking_id, client_key)
    WHERE client_key IS NOT NULL;
CREATE INDEX ix_refund_intents_booking ON refund_intents (booking_id, created_at);
CREATE INDEX ix_refund_intents_stripe_refund ON refund_intents (stripe_refund_id)
    WHERE stripe_refund_id IS NOT NULL;

ALTER TABLE users ADD COLUMN stripe_customer_id VARCHAR(255);
ALTER TABLE users ADD CONSTRAINT uq_users_stripe_customer_id UNIQUE (stripe_customer_id);
"""

DROP = """
ALTER TABLE users DROP CONSTRAINT IF EXISTS uq_users_stripe_customer_id;
ALTER TABLE users DROP COLUMN IF EXISTS stripe_customer_id;
DROP TABLE IF EXISTS refund_intents;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
