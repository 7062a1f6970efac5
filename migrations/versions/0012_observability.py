"""Observability: each job's last successful run, and the demo's simulated clock.

``job_runs``: one row per scheduled job, stamped (database time) when a run
succeeds, so ``GET /metrics`` of any replica tells when each job last
succeeded in any worker process.

``simulated_clock``: at most one row, written by ``coachpay demo`` only (with the
Stripe emulator): how far ahead of the wall clock the demo's clock runs, so
``coachpay serve``, ``worker`` and ``payouts run`` started later all read the
same simulated time instead of each its own. Ignored with a real Stripe key.

Revision ID: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE job_runs (
    job_id           VARCHAR(64) PRIMARY KEY,
    last_success_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE simulated_clock (
    id        SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    ahead_by  INTERVAL NOT NULL,
    set_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""

DROP = """
DROP TABLE IF EXISTS simulated_clock;
DROP TABLE IF EXISTS job_runs;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
