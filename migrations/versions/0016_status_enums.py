"""Payout and earning statuses move only along their state machine's edges.

A trigger per table refuses an UPDATE that changes ``status`` to one the
table below does not allow from the old one, whoever writes it (the ORM or
the raw SQL of the payout and release hot paths). The tables are written out
here as they were when this revision was made (a migration must not change
when the code does); tests/schema/test_status_triggers.py asserts they equal
``payouts.models.PAYOUT_ALLOWED`` and ``ledger.models.EARNING_ALLOWED``, so a
change to either needs a new migration.

An UPDATE that leaves the status as it was is not a transition and is not
checked (``WHEN (OLD.status IS DISTINCT FROM NEW.status)``).

Revision ID: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

PAYOUT_ALLOWED: dict[str, tuple[str, ...]] = {
    "pending": ("pending", "waiting_funds", "paid", "failed"),
    "waiting_funds": ("pending", "waiting_funds", "paid", "failed"),
    "paid": (),
    "failed": (),
}
EARNING_ALLOWED: dict[str, tuple[str, ...]] = {
    "pending": ("available", "cancelled"),
    "available": ("paid",),
    "paid": (),
    "cancelled": ("cancelled", "pending"),
}
TABLES = {"payouts": PAYOUT_ALLOWED, "earnings": EARNING_ALLOWED}


def _pairs(allowed: dict[str, tuple[str, ...]]) -> str:
    rows = [f"('{a}', '{b}')" for a, bs in allowed.items() for b in bs]
    return ", ".join(rows)


def _function(table: str, allowed: dict[str, tuple[str, ...]]) -> str:
    return f"""
CREATE FUNCTION {table}_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (OLD.status, NEW.status) IN ({_pairs(allowed)}) THEN
        RAISE EXCEPTION '{table}.status: % -> % is not an allowed transition (row %)',
            OLD.status, NEW.status, OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER {table}_status_transition
    BEFORE UPDATE OF status ON {table}
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {table}_status_transition();
"""


def upgrade() -> None:
    for table, allowed in TABLES.items():
        op.execute(_function(table, allowed))


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_status_transition ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_status_transition()")
