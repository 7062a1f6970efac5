"""The payout service's SQL: raw statements for the per-coach hot path.

The payout job runs reserve() and settle() once per coach; written as ORM
flushes they cost ~20 round trips and most of a payout's CPU. These do the
same writes in fewer statements (RETURNING, data-modifying CTEs).
"""

from __future__ import annotations

from sqlalchemy import text

# Everything reserve() needs to know about the coach, in one round trip.
COACH = text(
    "SELECT p.payouts_paused, p.payout_schedule, "
    "COALESCE((p.minimum_payout ->> :cur)::bigint, 0) AS minimum, "
    "ca.payouts_enabled, ca.stripe_account_id, "
    "EXISTS (SELECT 1 FROM payouts o WHERE o.coach_id = p.user_id AND o.currency = :cur "
    "  AND o.status IN ('pending', 'waiting_funds')) AS has_open, "
    "(SELECT max(created_at) FROM payouts o WHERE o.coach_id = p.user_id AND o.currency = :cur "
    "  AND o.status <> 'failed') AS last_payout_at, "
    "(SELECT id FROM ledger_accounts a WHERE a.owner_type = 'coach' AND a.owner_id = p.user_id "
    "  AND a.kind = 'in_transit' AND a.currency = :cur) AS in_transit "
    "FROM coach_profiles p LEFT JOIN connect_accounts ca ON ca.coach_id = p.user_id "
    "WHERE p.user_id = :coach"
)
# The coach's available balance locked, found by owner (no separate id lookup).
LOCK_BY_OWNER = (
    "SELECT s.account_id, s.balance FROM ledger_balance_slots s WHERE s.account_id = "
    "(SELECT id FROM ledger_accounts WHERE owner_type = 'coach' AND owner_id = :c "
    "AND kind = 'available' AND currency = :cur) "
)
INSERT = text(
    "INSERT INTO payouts (coach_id, currency, amount, status, destination, retry_of, "
    "created_at, updated_at) VALUES (:c, :cur, :amount, 'pending', :dest, :retry_of, :now, :now) "
    "RETURNING id"
)
# The reservation's bookkeeping after the posting: the transaction on the row,
# and the earnings it pays for, in one round trip.
RESERVED = text(
    "WITH p AS (UPDATE payouts SET reserve_transaction_id = :tx WHERE id = :id) "
    "UPDATE earnings SET payout_id = :id WHERE coach_id = :c AND currency = :cur "
    "AND status = 'available' AND payout_id IS NULL"
)
COACH_ACCOUNTS = text(
    "SELECT kind, id FROM ledger_accounts WHERE owner_type = 'coach' AND owner_id = :c "
    "AND currency = :cur"
)


SETTLE_ACCOUNTS = text(
    "SELECT (SELECT id FROM ledger_accounts WHERE owner_type = 'coach' AND owner_id = :c "
    "  AND kind = 'in_transit' AND currency = :cur) AS in_transit, "
    "(SELECT id FROM ledger_accounts WHERE owner_type = 'platform' AND owner_id = 0 "
    "  AND kind = 'stripe_balance' AND currency = :cur) AS cash"
)
# Everything settle() writes after the posting, in one round trip: the
# attempt, the earnings paid, the payout row.
SETTLED = text(
    "WITH a AS (INSERT INTO payout_attempts (payout_id, idempotency_key, outcome, "
    "  stripe_transfer_id, at) VALUES (:id, :key, :outcome, :tr, :now)), "
    "e AS (UPDATE earnings SET status = 'paid' WHERE payout_id = :id) "
    "UPDATE payouts SET status = 'paid', stripe_transfer_id = :tr, settle_transaction_id = :tx, "
    "settled_at = :now, next_attempt_at = NULL, last_error = NULL, updated_at = :now, "
    "attempts = attempts + 1, last_attempt_at = :now WHERE id = :id "
    "RETURNING attempts"
)
