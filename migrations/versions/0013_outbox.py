"""Outgoing events: a transactional outbox filled by triggers, webhook endpoints, deliveries.

Every state change the marketplace hears about is written to ``outbox_events``
by a trigger on the table that holds the state, in the transaction of the
change: a rolled-back change leaves no event, a committed one cannot be lost,
and no code path (a service, a job's raw SQL, a hand-run UPDATE) can forget
to emit. The same reasoning as the lifetime totals of 0007.

Where each event comes from (core/outbox/README.md has the payloads):

- ``bookings``: INSERT -> ``booking.pending``; status updates to pending,
  failed, cancelled, and to paid from pending or failed -> ``booking.<status>``.
  A booking that goes back to paid because a refund failed is told by
  ``booking.refund_failed`` instead, and refunded / partially_refunded by the
  refund rows, which carry the amounts.
- ``refunds``: a booked refund (INSERT with a ledger transaction) ->
  ``booking.refunded``; a booked refund that Stripe later fails (status to
  failed / canceled) -> ``booking.refund_failed``. These two are deferred
  constraint triggers: they run at COMMIT, so the booking they describe
  (amount refunded, status) is its final state in the transaction, whatever
  order the ORM flushed the refund and the booking in.
- ``booking_events`` (the booking audit trail): ``dispute_opened`` ->
  ``booking.disputed``; ``dispute_won`` / ``dispute_lost`` ->
  ``booking.dispute_closed``. No status column holds a dispute (the booking
  keeps its status); its audit row is the one row every dispute writes.
- ``coaching_sessions``: status to cancelled -> ``session.cancelled``.
- ``connect_accounts``: INSERT, or a change of status, charges_enabled or
  payouts_enabled -> ``coach.onboarding_updated``.
- ``earnings``: pending -> available -> ``earning.released``.
- ``payouts``: INSERT -> ``payout.created``; status to paid / failed ->
  ``payout.paid`` / ``payout.failed``; reversed_amount growing ->
  ``payout.reversed``.

Cost: row triggers carry WHEN clauses on the columns above, so an unrelated
update (a checkout URL, a payout's attempt count, a hold pushed back) never
calls a function. The release job flips a whole batch of earnings
(``payouts/release.py``, 500 rows a statement by default) in one UPDATE, so
earnings have a statement trigger over transition tables instead: one
INSERT ... SELECT per statement rather than one function call and one INSERT
per row. Its price: every UPDATE statement on earnings (the payout job's two
per payout, refunds taking a share) materialises its transition tables and
runs a join that finds nothing (PostgreSQL allows no column list, and no
WHEN on rows, for a trigger with transition tables). Measured on 10,000
earnings (median of 9, PostgreSQL 15, the shared 2-core machine):

    release, 20 UPDATEs of 500 rows:   no trigger 192 ms, statement 483 ms, row 831 ms
    2,000 one-row UPDATEs of payout_id: no trigger 393 ms, statement 452 ms, row 355 ms

so about 29 us an event on the release (a row trigger: 64 us) against 30 us
on each unrelated statement: at 100,000 earnings and 10,000 payouts the
statement trigger costs about 3 s + 0.6 s of database time, a row trigger
6.4 s. ``bench.payouts --quick`` (10,000 earnings, 1,000 payouts, two runs
each, alternated): 18.4 / 13.2 s before, 26.1 / 13.4 s after (noise on a
busy box: load 4 to 6); PostgreSQL backends' CPU 6.5 / 6.2 s before, 8.0 /
7.2 s after, for 12,000 events.

Reading in order: ``txid`` is the writing transaction's id. Readers (the
fan-out to endpoints, the event list) take events only below
``pg_snapshot_xmin(pg_current_snapshot())``, the oldest transaction still
running, and walk ``(txid, id)``: a transaction that took a lower id but
commits later is waited for, never skipped. A long-running writer delays
events; it never loses them.

Revision ID: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE outbox_events (
    id           BIGSERIAL PRIMARY KEY,
    -- The public id (evt_<32 hex>): random, so a database created again never
    -- reuses an id a receiver has already seen.
    uid          UUID NOT NULL DEFAULT gen_random_uuid(),
    type         VARCHAR(64) NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    data         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT statement_timestamp(),
    CONSTRAINT uq_outbox_events_uid UNIQUE (uid)
);
CREATE INDEX ix_outbox_events_position ON outbox_events (txid, id);
CREATE INDEX ix_outbox_events_time ON outbox_events (occurred_at, id);

-- Where the fan-out has got to in (txid, id) order; one row.
CREATE TABLE outbox_cursor (
    id        SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    txid      xid8 NOT NULL DEFAULT '0',
    event_id  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO outbox_cursor DEFAULT VALUES;

CREATE TABLE outbox_endpoints (
    id                          BIGSERIAL PRIMARY KEY,
    url                         TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description                 TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    -- Event types wanted; '*' is every type.
    event_types                 TEXT[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 64),
    enabled                     BOOLEAN NOT NULL DEFAULT TRUE,
    -- One delivery at a time, in event order (see core/outbox/delivery.py).
    ordered                     BOOLEAN NOT NULL DEFAULT TRUE,
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_expires_at  TIMESTAMPTZ,
    failing_since               TIMESTAMPTZ,
    disabled_at                 TIMESTAMPTZ,
    disabled_reason             TEXT,
    created_by                  BIGINT REFERENCES users (id),
    created_at                  TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL
);

CREATE TABLE outbox_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    endpoint_id      BIGINT NOT NULL REFERENCES outbox_endpoints (id) ON DELETE CASCADE,
    event_id         BIGINT NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    -- The event's time, copied: the ordering gate reads one index.
    occurred_at      TIMESTAMPTZ NOT NULL,
    status           VARCHAR(16) NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    -- Start of the current retry window (first attempt, or the last replay).
    retry_from       TIMESTAMPTZ,
    last_attempt_at  TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT uq_outbox_deliveries_endpoint_event UNIQUE (endpoint_id, event_id)
);
-- Claims go endpoint by endpoint (core/outbox/delivery.py): the head in event
-- order for an ordered endpoint, the due ones for the others. Per endpoint, so
-- one endpoint's backlog is never scanned to find another's work.
CREATE INDEX ix_outbox_deliveries_head ON outbox_deliveries (endpoint_id, occurred_at, event_id)
    WHERE status = 'pending';
CREATE INDEX ix_outbox_deliveries_due ON outbox_deliveries (endpoint_id, next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX ix_outbox_deliveries_event ON outbox_deliveries (event_id);

CREATE TABLE outbox_attempts (
    id                BIGSERIAL PRIMARY KEY,
    delivery_id       BIGINT NOT NULL REFERENCES outbox_deliveries (id) ON DELETE CASCADE,
    endpoint_id       BIGINT NOT NULL,
    attempt           INTEGER NOT NULL,
    at                TIMESTAMPTZ NOT NULL,
    outcome           VARCHAR(16) NOT NULL
                      CHECK (outcome IN ('delivered', 'failed', 'timeout', 'refused', 'error')),
    status_code       INTEGER,
    latency_ms        INTEGER,
    error             TEXT CHECK (length(error) <= 1024),
    response_excerpt  TEXT CHECK (length(response_excerpt) <= 1024)
);
CREATE INDEX ix_outbox_attempts_endpoint ON outbox_attempts (endpoint_id, id DESC);
CREATE INDEX ix_outbox_attempts_delivery ON outbox_attempts (delivery_id);

-- ISO 8601 in UTC whatever the session's TimeZone.
CREATE FUNCTION outbox_ts(t TIMESTAMPTZ) RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION outbox_booking(b bookings) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', b.id, 'status', b.status, 'coaching_session_id', b.coaching_session_id,
        'coach_id', b.coach_id, 'mentee_id', b.mentee_id, 'amount', b.amount,
        'amount_refunded', b.amount_refunded, 'currency', b.currency, 'attempt', b.attempt,
        'paid_at', outbox_ts(b.paid_at), 'created_at', outbox_ts(b.created_at),
        'session_url', '/v1/sessions/' || b.coaching_session_id)
$$;

CREATE FUNCTION outbox_payout(p payouts) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'coach_id', p.coach_id, 'amount', p.amount, 'currency', p.currency,
        'status', p.status, 'destination', p.destination,
        'stripe_transfer_id', p.stripe_transfer_id, 'reversed_amount', p.reversed_amount,
        'failure_code', p.failure_code, 'failure_reason', p.failure_reason,
        'retry_of', p.retry_of, 'created_at', outbox_ts(p.created_at),
        'settled_at', outbox_ts(p.settled_at), 'failed_at', outbox_ts(p.failed_at),
        'list_url', '/v1/finance/payouts?coach_id=' || p.coach_id)
$$;

CREATE FUNCTION outbox_emit(p_type TEXT, p_at TIMESTAMPTZ, p_data JSONB)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox_events (type, occurred_at, data)
    VALUES (p_type, COALESCE(p_at, statement_timestamp()), p_data)
$$;

CREATE FUNCTION outbox_bookings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM outbox_emit(
        'booking.' || NEW.status,
        CASE WHEN TG_OP = 'INSERT' THEN NEW.created_at ELSE NEW.updated_at END,
        jsonb_build_object(
            'booking', outbox_booking(NEW),
            'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END));
    RETURN NULL;
END $$;

-- Deferred to COMMIT: the booking is read in its final state (see the docstring).
CREATE FUNCTION outbox_refunds() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = NEW.booking_id;
    PERFORM outbox_emit(
        CASE WHEN TG_OP = 'INSERT' THEN 'booking.refunded' ELSE 'booking.refund_failed' END,
        CASE WHEN TG_OP = 'INSERT' THEN NEW.created_at ELSE b.updated_at END,
        jsonb_build_object(
            'booking', outbox_booking(b),
            'refund', jsonb_build_object(
                'id', NEW.id, 'stripe_refund_id', NEW.stripe_refund_id,
                'amount', NEW.amount, 'currency', NEW.currency, 'status', NEW.status,
                'source', NEW.source, 'payment_intent_id', NEW.payment_intent_id,
                'created_at', outbox_ts(NEW.created_at)),
            -- The booking's own payment refunded in full (a refund of a duplicate
            -- payment leaves the booking as it was).
            'full', NEW.payment_intent_id IS NOT DISTINCT FROM b.payment_intent_id
                    AND b.amount_refunded >= b.amount));
    RETURN NULL;
END $$;

CREATE FUNCTION outbox_disputes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b bookings;
    v_opened JSONB;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = NEW.booking_id;
    IF NEW.cause = 'dispute_opened' THEN
        v_opened := NEW.detail;
    ELSE
        SELECT e.detail INTO v_opened FROM booking_events e
         WHERE e.booking_id = NEW.booking_id AND e.cause = 'dispute_opened'
           AND e.detail ->> 'dispute' = NEW.detail ->> 'dispute'
         ORDER BY e.id LIMIT 1;
    END IF;
    PERFORM outbox_emit(
        CASE WHEN NEW.cause = 'dispute_opened' THEN 'booking.disputed'
             ELSE 'booking.dispute_closed' END,
        NEW.at,
        jsonb_build_object(
            'booking', outbox_booking(b),
            'dispute', jsonb_build_object(
                'id', NEW.detail ->> 'dispute',
                'status', substr(NEW.cause, length('dispute_') + 1),
                'amount', (v_opened ->> 'amount')::BIGINT,
                'coach_part', (v_opened ->> 'coach_part')::BIGINT,
                'currency', b.currency)));
    RETURN NULL;
END $$;

CREATE FUNCTION outbox_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM outbox_emit('session.cancelled', NEW.updated_at, jsonb_build_object(
        'session', jsonb_build_object(
            'id', NEW.id, 'coach_id', NEW.coach_id, 'title', NEW.title, 'status', NEW.status,
            'starts_at', outbox_ts(NEW.starts_at), 'ends_at', outbox_ts(NEW.ends_at),
            'price', NEW.price, 'currency', NEW.currency,
            'url', '/v1/sessions/' || NEW.id)));
    RETURN NULL;
END $$;

CREATE FUNCTION outbox_connect_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM outbox_emit('coach.onboarding_updated', NEW.updated_at, jsonb_build_object(
        'account', jsonb_build_object(
            'coach_id', NEW.coach_id, 'stripe_account_id', NEW.stripe_account_id,
            'status', NEW.status,
            'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            'charges_enabled', NEW.charges_enabled, 'payouts_enabled', NEW.payouts_enabled,
            'details_submitted', NEW.details_submitted, 'disabled_reason', NEW.disabled_reason,
            'url', '/v1/admin/coaches/' || NEW.coach_id)));
    RETURN NULL;
END $$;

-- One INSERT per statement for the release job's batches (see the docstring).
CREATE FUNCTION outbox_earnings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_events (type, occurred_at, data)
    SELECT 'earning.released', COALESCE(n.released_at, statement_timestamp()),
           jsonb_build_object('earning', jsonb_build_object(
               'id', n.id, 'coach_id', n.coach_id, 'booking_id', n.booking_id,
               'amount', n.amount - n.reduced_before_release, 'currency', n.currency,
               'gross', n.gross, 'available_at', outbox_ts(n.available_at),
               'released_at', outbox_ts(n.released_at),
               'list_url', '/v1/coaches/me/earnings'))
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE o.status = 'pending' AND n.status = 'available'
     ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION outbox_payouts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM outbox_emit('payout.created', NEW.created_at,
                            jsonb_build_object('payout', outbox_payout(NEW)));
        RETURN NULL;
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('paid', 'failed') THEN
        PERFORM outbox_emit(
            'payout.' || NEW.status,
            CASE WHEN NEW.status = 'paid' THEN NEW.settled_at ELSE NEW.failed_at END,
            jsonb_build_object('payout', outbox_payout(NEW)));
    END IF;
    IF NEW.reversed_amount > OLD.reversed_amount THEN
        PERFORM outbox_emit('payout.reversed', NEW.updated_at, jsonb_build_object(
            'payout', outbox_payout(NEW),
            'reversal', jsonb_build_object(
                'amount', NEW.reversed_amount - OLD.reversed_amount, 'currency', NEW.currency)));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER bookings_outbox_insert AFTER INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION outbox_bookings();
CREATE TRIGGER bookings_outbox_update AFTER UPDATE OF status ON bookings
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND (
        NEW.status IN ('pending', 'failed', 'cancelled')
        OR (NEW.status = 'paid' AND OLD.status IN ('pending', 'failed'))))
    EXECUTE FUNCTION outbox_bookings();

CREATE CONSTRAINT TRIGGER refunds_outbox_insert AFTER INSERT ON refunds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.ledger_transaction_id IS NOT NULL AND NEW.status NOT IN ('failed', 'canceled'))
    EXECUTE FUNCTION outbox_refunds();
CREATE CONSTRAINT TRIGGER refunds_outbox_update AFTER UPDATE OF status ON refunds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.ledger_transaction_id IS NOT NULL
          AND OLD.status NOT IN ('failed', 'canceled') AND NEW.status IN ('failed', 'canceled'))
    EXECUTE FUNCTION outbox_refunds();

CREATE TRIGGER booking_events_outbox AFTER INSERT ON booking_events
    FOR EACH ROW WHEN (NEW.cause IN ('dispute_opened', 'dispute_won', 'dispute_lost'))
    EXECUTE FUNCTION outbox_disputes();

CREATE TRIGGER coaching_sessions_outbox AFTER UPDATE OF status ON coaching_sessions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'cancelled')
    EXECUTE FUNCTION outbox_sessions();

CREATE TRIGGER connect_accounts_outbox_insert AFTER INSERT ON connect_accounts
    FOR EACH ROW EXECUTE FUNCTION outbox_connect_accounts();
CREATE TRIGGER connect_accounts_outbox_update
    AFTER UPDATE OF status, charges_enabled, payouts_enabled ON connect_accounts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
        OR OLD.charges_enabled IS DISTINCT FROM NEW.charges_enabled
        OR OLD.payouts_enabled IS DISTINCT FROM NEW.payouts_enabled)
    EXECUTE FUNCTION outbox_connect_accounts();

CREATE TRIGGER earnings_outbox_update AFTER UPDATE ON earnings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_earnings();

CREATE TRIGGER payouts_outbox_insert AFTER INSERT ON payouts
    FOR EACH ROW EXECUTE FUNCTION outbox_payouts();
CREATE TRIGGER payouts_outbox_update AFTER UPDATE OF status, reversed_amount ON payouts
    FOR EACH ROW WHEN ((OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('paid', 'failed'))
        OR NEW.reversed_amount > OLD.reversed_amount)
    EXECUTE FUNCTION outbox_payouts();
"""

DROP = r"""
DROP TRIGGER IF EXISTS payouts_outbox_update ON payouts;
DROP TRIGGER IF EXISTS payouts_outbox_insert ON payouts;
DROP TRIGGER IF EXISTS earnings_outbox_update ON earnings;
DROP TRIGGER IF EXISTS connect_accounts_outbox_update ON connect_accounts;
DROP TRIGGER IF EXISTS connect_accounts_outbox_insert ON connect_accounts;
DROP TRIGGER IF EXISTS coaching_sessions_outbox ON coaching_sessions;
DROP TRIGGER IF EXISTS booking_events_outbox ON booking_events;
DROP TRIGGER IF EXISTS refunds_outbox_update ON refunds;
DROP TRIGGER IF EXISTS refunds_outbox_insert ON refunds;
DROP TRIGGER IF EXISTS bookings_outbox_update ON bookings;
DROP TRIGGER IF EXISTS bookings_outbox_insert ON bookings;
DROP FUNCTION IF EXISTS outbox_payouts();
DROP FUNCTION IF EXISTS outbox_earnings();
DROP FUNCTION IF EXISTS outbox_connect_accounts();
DROP FUNCTION IF EXISTS outbox_sessions();
DROP FUNCTION IF EXISTS outbox_disputes();
DROP FUNCTION IF EXISTS outbox_refunds();
DROP FUNCTION IF EXISTS outbox_bookings();
DROP FUNCTION IF EXISTS outbox_emit(TEXT, TIMESTAMPTZ, JSONB);
DROP FUNCTION IF EXISTS outbox_payout(payouts);
DROP FUNCTION IF EXISTS outbox_booking(bookings);
DROP FUNCTION IF EXISTS outbox_ts(TIMESTAMPTZ);
DROP TABLE IF EXISTS outbox_attempts;
DROP TABLE IF EXISTS outbox_deliveries;
DROP TABLE IF EXISTS outbox_endpoints;
DROP TABLE IF EXISTS outbox_cursor;
DROP TABLE IF EXISTS outbox_events;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
