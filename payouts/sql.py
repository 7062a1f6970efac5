"""The payout service's SQL: raw statements for the per-coach hot path.

The payout job runs reserve() and settle() once per coach; written as ORM
flushes they cost ~20 round trips and most of a payout's CPU. These do the
same writes in fewer statements (RETURNING, data-modifying CTEs).
"""

from __future__ import annotations

from sqlalchemy import text

from connect.profile import BACKOFF_OVER_SQL
from ledger.models import EarningStatus as _E
from payouts.models import OPEN_STATUSES
from payouts.models import PayoutStatus as _P

_OPEN = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"

# A paid transfer ends a coach's run of refusals (payouts/refusals.py). Only a
# coach who has one is touched, so the usual settle locks no profile row.
_CLEAR_REFUSALS = (
    "r AS (UPDATE coach_profiles SET payout_refusals = 0, payout_retry_at = NULL, "
    "  payout_last_refusal = NULL WHERE user_id = :c "
    "  AND (payout_refusals <> 0 OR payout_retry_at IS NOT NULL)), "
)
# Everything reserve() needs to know about the coach, in one round trip.
COACH = text(
    "SELECT p.payouts_paused, p.payout_schedule, p.payout_refusals, p.payout_retry_at, "
    f"{BACKOFF_OVER_SQL} AS backoff_over, "
    "COALESCE((p.minimum_payout ->> :cur)::bigint, 0) AS minimum, "
    "ca.payouts_enabled, ca.stripe_account_id, "
    "EXISTS (SELECT 1 FROM payouts o WHERE o.coach_id = p.user_id AND o.currency = :cur "
    f"  AND o.status IN {_OPEN}) AS has_open, "
    "(SELECT max(created_at) FROM payouts o WHERE o.coach_id = p.user_id AND o.currency = :cur "
    f"  AND o.status <> '{_P.FAILED}') AS last_payout_at, "
    "(SELECT id FROM ledger_accounts a WHERE a.owner_type = 'coach' AND a.owner_id = p.user_id "
    "  AND a.kind = 'in_transit' AND a.currency = :cur) AS in_transit "
    "FROM coach_profiles p LEFT JOIN connect_accounts ca ON ca.coach_id = p.user_id "
    "WHERE p.user_id = :coach"
)
# The coach's available balance locked, found by owner (no separate id lookup).
# With each row the account's number of slots: under SKIP LOCKED a slot held by
# another transaction is missing from the rows, and a partial sum is no balance.
LOCK_BY_OWNER = (
    "SELECT s.account_id, s.balance, "
    "(SELECT slots FROM ledger_accounts a WHERE a.id = s.account_id) AS slots "
    "FROM ledger_balance_slots s WHERE s.account_id = "
    "(SELECT id FROM ledger_accounts WHERE owner_type = 'coach' AND owner_id = :c "
    "AND kind = 'available' AND currency = :cur) "
)
INSERT = text(
    "INSERT INTO payouts (coach_id, currency, amount, status, destination, retry_of, "
    f"created_at, updated_at) VALUES (:c, :cur, :amount, '{_P.PENDING}', :dest, :retry_of, "
    ":now, :now) "
    "RETURNING id"
)
# The reservation's bookkeeping after the posting: the transaction on the row,
# and the earnings it pays for, in one round trip.
RESERVED = text(
    "WITH p AS (UPDATE payouts SET reserve_transaction_id = :tx WHERE id = :id) "
    "UPDATE earnings SET payout_id = :id WHERE coach_id = :c AND currency = :cur "
    f"AND status = '{_E.AVAILABLE}' AND payout_id IS NULL"
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
    f"{_CLEAR_REFUSALS}"
    f"e AS (UPDATE earnings SET status = '{_E.PAID}' WHERE payout_id = :id) "
    f"UPDATE payouts SET status = '{_P.PAID}', stripe_transfer_id = :tr, "
    "settle_transaction_id = :tx, "
    "settled_at = :now, next_attempt_at = NULL, last_error = NULL, updated_at = :now, "
    "attempts = attempts + 1, last_attempt_at = :now WHERE id = :id "
    "RETURNING attempts"
)


# The payout job's reservation in ONE statement (payouts/hotpath.py): the
# coach's available balance locked (SKIP LOCKED: a busy coach is declined,
# never waited for), every condition reserve() checks, the payout row, its
# ``payout:<id>`` posting and the earnings it pays for. It returns no row when
# anything is off, and the caller then runs reserve() for the exact reason.
# The payout id comes from the sequence first because the posting's key needs
# it and the row needs the posting's id (a CTE cannot update a row inserted by
# a sibling CTE). Every slot of the account must be locked, or the sum would
# be part of the balance.
RESERVE_DUE = text(
    "WITH acct AS (SELECT id, slots FROM ledger_accounts WHERE owner_type = 'coach' "
    "  AND owner_id = :c AND kind = 'available' AND currency = :cur), "
    "locked AS (SELECT s.balance FROM ledger_balance_slots s "
    "  WHERE s.account_id = (SELECT id FROM acct) FOR UPDATE SKIP LOCKED), "
    "bal AS (SELECT CAST(-COALESCE(sum(balance), 0) AS bigint) AS owed, count(*) AS n "
    "  FROM locked), "
    "due AS (SELECT a.id AS available, it.id AS in_transit, b.owed, ca.stripe_account_id AS dest "
    "  FROM acct a CROSS JOIN bal b "
    "  JOIN coach_profiles p ON p.user_id = :c "
    "  JOIN connect_accounts ca ON ca.coach_id = :c "
    "  JOIN ledger_accounts it ON it.owner_type = 'coach' AND it.owner_id = :c "
    "    AND it.kind = 'in_transit' AND it.currency = :cur "
    "  WHERE b.n = a.slots AND b.owed > 0 "
    "  AND b.owed >= COALESCE((p.minimum_payout ->> :cur)::bigint, 0) "
    "  AND NOT p.payouts_paused AND ca.payouts_enabled "
    f"  AND {BACKOFF_OVER_SQL} "
    "  AND COALESCE(ca.stripe_account_id, '') <> '' "
    "  AND p.payout_schedule = :schedule "
    "  AND NOT EXISTS (SELECT 1 FROM payouts o WHERE o.coach_id = :c AND o.currency = :cur "
    f"    AND o.status IN {_OPEN}) "
    "  AND (CAST(:period_start AS timestamptz) IS NULL OR NOT EXISTS (SELECT 1 FROM payouts o "
    f"    WHERE o.coach_id = :c AND o.currency = :cur AND o.status <> '{_P.FAILED}' "
    "    AND o.created_at >= CAST(:period_start AS timestamptz)))), "
    "n AS (SELECT nextval(pg_get_serial_sequence('payouts', 'id')) AS id, d.* FROM due d), "
    "t AS (SELECT n.*, l.transaction_id FROM n CROSS JOIN LATERAL ledger_post(:type, "
    "  'payout:' || n.id, :now, jsonb_build_array("
    "    jsonb_build_object('account_id', n.available, 'amount', n.owed, 'currency', "
    "      CAST(:cur AS text)), "
    "    jsonb_build_object('account_id', n.in_transit, 'amount', -n.owed, 'currency', "
    "      CAST(:cur AS text))), "
    "  jsonb_build_object('coach_id', CAST(:c AS bigint), 'payout_id', n.id)) l), "
    "ins AS (INSERT INTO payouts (id, coach_id, currency, amount, status, destination, "
    "  reserve_transaction_id, created_at, updated_at) "
    f"  SELECT id, :c, :cur, owed, '{_P.PENDING}', dest, transaction_id, :now, :now FROM t "
    "  RETURNING id, amount, destination, reserve_transaction_id), "
    "e AS (UPDATE earnings SET payout_id = (SELECT id FROM ins) WHERE coach_id = :c "
    f"  AND currency = :cur AND status = '{_E.AVAILABLE}' AND payout_id IS NULL "
    "  AND EXISTS (SELECT 1 FROM ins)) "
    "SELECT id, amount, destination, reserve_transaction_id FROM ins"
)
# An open payout claimed for its Stripe call (skipped if another worker holds
# it), with the two accounts settling it will post to, in one round trip.
LOCK_FOR_SEND = text(
    "SELECT p.*, "
    "(SELECT id FROM ledger_accounts WHERE owner_type = 'coach' AND owner_id = p.coach_id "
    "  AND kind = 'in_transit' AND currency = p.currency) AS in_transit_account, "
    "(SELECT id FROM ledger_accounts WHERE owner_type = 'platform' AND owner_id = 0 "
    "  AND kind = 'stripe_balance' AND currency = p.currency) AS cash_account "
    f"FROM payouts p WHERE p.id = :id AND p.status IN {_OPEN} "
    "AND (CAST(:now AS timestamptz) IS NULL OR p.next_attempt_at IS NULL "
    "  OR p.next_attempt_at <= CAST(:now AS timestamptz)) "
    "FOR UPDATE OF p SKIP LOCKED"
)
# settle() in one round trip once both accounts are known: the
# ``payout_settled:<id>`` posting, the attempt, the earnings paid, the row.
SETTLE_ONE = text(
    "WITH t AS (SELECT l.transaction_id FROM ledger_post(:type, 'payout_settled:' || "
    "  CAST(:id AS bigint), :now, jsonb_build_array("
    "    jsonb_build_object('account_id', CAST(:in_transit AS bigint), "
    "      'amount', CAST(:amount AS bigint), 'currency', CAST(:cur AS text)), "
    "    jsonb_build_object('account_id', CAST(:cash AS bigint), "
    "      'amount', -CAST(:amount AS bigint), 'currency', CAST(:cur AS text))), "
    "  jsonb_build_object('coach_id', CAST(:c AS bigint), 'payout_id', CAST(:id AS bigint), "
    "    'stripe_transfer_id', CAST(:tr AS text))) l), "
    "a AS (INSERT INTO payout_attempts (payout_id, idempotency_key, outcome, "
    "  stripe_transfer_id, at) VALUES (:id, :key, :outcome, :tr, :now)), "
    f"{_CLEAR_REFUSALS}"
    f"e AS (UPDATE earnings SET status = '{_E.PAID}' WHERE payout_id = :id) "
    f"UPDATE payouts SET status = '{_P.PAID}', stripe_transfer_id = :tr, "
    "settle_transaction_id = (SELECT transaction_id FROM t), settled_at = :now, "
    "next_attempt_at = NULL, last_error = NULL, updated_at = :now, "
    "attempts = attempts + 1, last_attempt_at = :now WHERE id = :id "
    "RETURNING attempts, settle_transaction_id"
)
