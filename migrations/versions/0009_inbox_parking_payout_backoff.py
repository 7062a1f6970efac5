"""Poison webhook events are parked; refused transfers back off per coach and pause.

Webhook inbox: a ``parked`` status (terminal until an admin replays the
event), the failures of the current streak counted apart by kind (a handler
error counts toward parking, a transient one, such as Stripe or the database
being away, only by how long it lasts), when it was first and last tried, how
often an admin replayed it. Events the old rule had given up on (failed,
nothing scheduled) become parked.

Coach profiles: the consecutive transfers Stripe refused, when the next one
may be tried, the last refusal's message, and who paused the payouts (an
admin, the system, or the refusal rule), so an automatic pause reads apart
from an admin's.

Revision ID: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = r"""
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_status_check;
ALTER TABLE webhook_events
    ADD CONSTRAINT webhook_events_status_check
        CHECK (status IN ('pending', 'processed', 'failed', 'ignored', 'parked')),
    ADD COLUMN handler_failures    INTEGER NOT NULL DEFAULT 0 CHECK (handler_failures >= 0),
    ADD COLUMN transient_failures  INTEGER NOT NULL DEFAULT 0 CHECK (transient_failures >= 0),
    ADD COLUMN replays             INTEGER NOT NULL DEFAULT 0 CHECK (replays >= 0),
    ADD COLUMN first_attempt_at    TIMESTAMPTZ,
    ADD COLUMN last_attempt_at     TIMESTAMPTZ,
    ADD COLUMN failing_since       TIMESTAMPTZ,
    ADD COLUMN parked_at           TIMESTAMPTZ;

UPDATE webhook_events
   SET status = 'parked', handler_failures = attempts,
       first_attempt_at = received_at, last_attempt_at = received_at,
       failing_since = received_at, parked_at = received_at
 WHERE status = 'failed' AND next_attempt_at IS NULL;
-- Events still being retried: their old attempts count as handler failures, but
-- each keeps at least one more try (8 is core.inbox_failures.MAX_HANDLER_FAILURES).
UPDATE webhook_events
   SET handler_failures = LEAST(attempts, 7),
       first_attempt_at = received_at, last_attempt_at = received_at,
       failing_since = received_at
 WHERE status = 'failed';

-- Parked means parked: nothing schedules it, and it says since when.
ALTER TABLE webhook_events
    ADD CONSTRAINT ck_webhook_events_parked_at
        CHECK ((status = 'parked') = (parked_at IS NOT NULL)),
    ADD CONSTRAINT ck_webhook_events_parked_not_due
        CHECK (status <> 'parked' OR next_attempt_at IS NULL);

-- The admin list (GET /v1/admin/webhooks/failed), newest first.
CREATE INDEX ix_webhook_events_failed ON webhook_events (status, last_attempt_at DESC, id DESC)
    WHERE status IN ('failed', 'parked');

ALTER TABLE coach_profiles
    ADD COLUMN payout_refusals      INTEGER NOT NULL DEFAULT 0 CHECK (payout_refusals >= 0),
    ADD COLUMN payout_retry_at      TIMESTAMPTZ,
    ADD COLUMN payout_last_refusal  TEXT,
    ADD COLUMN payouts_paused_by    VARCHAR(24)
        CHECK (payouts_paused_by IN ('admin', 'system', 'transfer_refusals')),
    ADD CONSTRAINT ck_coach_profiles_paused_by CHECK (payouts_paused OR payouts_paused_by IS NULL);

UPDATE coach_profiles SET payouts_paused_by = 'admin' WHERE payouts_paused;
"""

DROP = r"""
ALTER TABLE coach_profiles
    DROP CONSTRAINT ck_coach_profiles_paused_by,
    DROP COLUMN payouts_paused_by,
    DROP COLUMN payout_last_refusal,
    DROP COLUMN payout_retry_at,
    DROP COLUMN payout_refusals;

DROP INDEX IF EXISTS ix_webhook_events_failed;
ALTER TABLE webhook_events
    DROP CONSTRAINT ck_webhook_events_parked_not_due,
    DROP CONSTRAINT ck_webhook_events_parked_at;
UPDATE webhook_events SET status = 'failed', next_attempt_at = NULL WHERE status = 'parked';
ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_status_check,
    ADD CONSTRAINT webhook_events_status_check
        CHECK (status IN ('pending', 'processed', 'failed', 'ignored')),
    DROP COLUMN parked_at,
    DROP COLUMN failing_since,
    DROP COLUMN last_attempt_at,
    DROP COLUMN first_attempt_at,
    DROP COLUMN replays,
    DROP COLUMN transient_failures,
    DROP COLUMN handler_failures;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
