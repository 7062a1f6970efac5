"""The double-entry ledger: accounts, balance slots, transactions, entries, earnings.

The database itself guards the money: a deferred constraint trigger rejects
an unbalanced transaction at commit, entries and transactions are append
only, and a leg's currency must be its account's (composite foreign key).

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE ledger_accounts (
    id          BIGSERIAL PRIMARY KEY,
    owner_type  VARCHAR(16) NOT NULL CHECK (owner_type IN ('platform', 'coach')),
    owner_id    BIGINT NOT NULL DEFAULT 0,
    kind        VARCHAR(32) NOT NULL,
    currency    VARCHAR(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    slots       INTEGER NOT NULL DEFAULT 1 CHECK (slots BETWEEN 1 AND 256),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_ledger_accounts_owner UNIQUE (owner_type, owner_id, kind, currency),
    CONSTRAINT uq_ledger_accounts_id_currency UNIQUE (id, currency)
);

-- The cached balance, split into slots so that hot platform accounts take
-- concurrent postings on different rows; the balance is the sum of slots.
CREATE TABLE ledger_balance_slots (
    account_id  BIGINT NOT NULL REFERENCES ledger_accounts (id),
    slot        INTEGER NOT NULL,
    balance     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, slot)
);

CREATE TABLE ledger_transactions (
    id                       BIGSERIAL PRIMARY KEY,
    type                     VARCHAR(32) NOT NULL,
    idempotency_key          TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    legs_signature           TEXT NOT NULL,
    occurred_at              TIMESTAMPTZ NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    coach_id                 BIGINT,
    payer_id                 BIGINT,
    coaching_session_id      BIGINT,
    booking_id               BIGINT,
    payout_id                BIGINT,
    stripe_object_id         TEXT,
    stripe_payment_intent_id TEXT,
    stripe_transfer_id       TEXT,
    description              TEXT,
    metadata                 JSONB NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT uq_ledger_transactions_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX ix_ledger_transactions_occurred_at ON ledger_transactions (occurred_at, id);
CREATE INDEX ix_ledger_transactions_coach ON ledger_transactions (coach_id, occurred_at)
    WHERE coach_id IS NOT NULL;
CREATE INDEX ix_ledger_transactions_booking ON ledger_transactions (booking_id)
    WHERE booking_id IS NOT NULL;
CREATE INDEX ix_ledger_transactions_payout ON ledger_transactions (payout_id)
    WHERE payout_id IS NOT NULL;

CREATE TABLE ledger_entries (
    id              BIGSERIAL PRIMARY KEY,
    transaction_id  BIGINT NOT NULL REFERENCES ledger_transactions (id),
    account_id      BIGINT NOT NULL,
    slot            INTEGER NOT NULL,
    currency        VARCHAR(3) NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount <> 0),
    balance_after   BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT fk_ledger_entries_account_currency FOREIGN KEY (account_id, currency)
        REFERENCES ledger_accounts (id, currency)
);
CREATE INDEX ix_ledger_entries_transaction_id ON ledger_entries (transaction_id);
CREATE INDEX ix_ledger_entries_account_slot_time
    ON ledger_entries (account_id, slot, created_at DESC, id DESC) INCLUDE (balance_after);

CREATE TABLE earnings (
    id                      BIGSERIAL PRIMARY KEY,
    coach_id                BIGINT NOT NULL,
    booking_id              BIGINT UNIQUE,
    currency                VARCHAR(3) NOT NULL,
    gross                   BIGINT NOT NULL CHECK (gross > 0),
    platform_fee            BIGINT NOT NULL CHECK (platform_fee >= 0),
    amount                  BIGINT NOT NULL CHECK (amount >= 0),
    reduced_before_release  BIGINT NOT NULL DEFAULT 0
        CHECK (reduced_before_release >= 0 AND reduced_before_release <= amount),
    available_at            TIMESTAMPTZ NOT NULL,
    status                  VARCHAR(16) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'available', 'paid', 'cancelled')),
    payment_transaction_id  BIGINT REFERENCES ledger_transactions (id),
    release_transaction_id  BIGINT REFERENCES ledger_transactions (id),
    released_at             TIMESTAMPTZ,
    payout_id               BIGINT,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ck_earnings_split CHECK (platform_fee + amount = gross)
);
CREATE INDEX ix_earnings_coach_id ON earnings (coach_id);
CREATE INDEX ix_earnings_payout_id ON earnings (payout_id) WHERE payout_id IS NOT NULL;
CREATE INDEX ix_earnings_due ON earnings (available_at, id) WHERE status = 'pending';

-- Rejects, at commit, a journal transaction whose legs do not sum to zero
-- per currency (or that has fewer than two legs).
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tx_id BIGINT;
    bad RECORD;
    n INTEGER;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        tx_id := NEW.transaction_id;
    ELSE
        tx_id := NEW.id;
    END IF;
    SELECT count(*) INTO n FROM ledger_entries WHERE transaction_id = tx_id;
    IF n < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % legs; at least two are needed', tx_id, n
            USING ERRCODE = 'CP001';
    END IF;
    SELECT currency, sum(amount) AS total INTO bad
      FROM ledger_entries WHERE transaction_id = tx_id
     GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: % % off', tx_id, bad.total, bad.currency
            USING ERRCODE = 'CP001';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
    AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'CP003';
END $$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Posting in one round trip. Legs are [{"account_id": .., "amount": .., "currency": ..}, ..].
-- Returns the transaction id and whether it was created now (false: the
-- same idempotency key with the same legs was posted before).
CREATE FUNCTION ledger_post(
    p_type TEXT, p_key TEXT, p_occurred_at TIMESTAMPTZ, p_legs JSONB, p_attrs JSONB
) RETURNS TABLE (transaction_id BIGINT, created BOOLEAN) LANGUAGE plpgsql AS $$
DECLARE
    v_sig TEXT;
    v_existing TEXT;
    v_tx BIGINT;
    v_slot_seed BIGINT;
    leg RECORD;
    v_slot INTEGER;
    v_balance BIGINT;
    v_missing BIGINT;
BEGIN
    IF jsonb_typeof(p_legs) IS DISTINCT FROM 'array' OR jsonb_array_length(p_legs) < 2 THEN
        RAISE EXCEPTION 'a ledger transaction needs at least two legs' USING ERRCODE = 'CP001';
    END IF;

    SELECT (l ->> 'account_id')::BIGINT INTO v_missing
      FROM jsonb_array_elements(p_legs) l
      LEFT JOIN ledger_accounts a ON a.id = (l ->> 'account_id')::BIGINT
     WHERE a.id IS NULL LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger account % does not exist', v_missing USING ERRCODE = 'CP004';
    END IF;

    -- Canonical form of the legs, to tell a replay from a conflicting reuse of a key.
    SELECT string_agg(x.account_id || ':' || x.amount, ',' ORDER BY x.account_id, x.amount)
      INTO v_sig
      FROM (SELECT (l ->> 'account_id')::BIGINT AS account_id, (l ->> 'amount')::BIGINT AS amount
              FROM jsonb_array_elements(p_legs) l) x;

    INSERT INTO ledger_transactions AS t (
        type, idempotency_key, legs_signature, occurred_at, coach_id, payer_id,
        coaching_session_id, booking_id, payout_id, stripe_object_id,
        stripe_payment_intent_id, stripe_transfer_id, description, metadata)
    VALUES (
        p_type, p_key, v_sig, p_occurred_at,
        (p_attrs ->> 'coach_id')::BIGINT, (p_attrs ->> 'payer_id')::BIGINT,
        (p_attrs ->> 'coaching_session_id')::BIGINT, (p_attrs ->> 'booking_id')::BIGINT,
        (p_attrs ->> 'payout_id')::BIGINT, p_attrs ->> 'stripe_object_id',
        p_attrs ->> 'stripe_payment_intent_id', p_attrs ->> 'stripe_transfer_id',
        p_attrs ->> 'description', COALESCE(p_attrs -> 'metadata', '{}'::jsonb))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING t.id INTO v_tx;

    IF v_tx IS NULL THEN
        SELECT t.id, t.legs_signature INTO v_tx, v_existing
          FROM ledger_transactions t WHERE t.idempotency_key = p_key;
        IF v_existing IS DISTINCT FROM v_sig THEN
            RAISE EXCEPTION 'idempotency key % was used for other legs', p_key
                USING ERRCODE = 'CP002';
        END IF;
        RETURN QUERY SELECT v_tx, FALSE;
        RETURN;
    END IF;

    -- One slot per database transaction (consecutive transactions get
    -- different slots), and legs locked in (account, slot) order, so that
    -- two postings never wait on each other in opposite orders.
    v_slot_seed := pg_current_xact_id()::TEXT::BIGINT;
    FOR leg IN
        SELECT (l ->> 'account_id')::BIGINT AS account_id,
               (l ->> 'amount')::BIGINT AS amount,
               l ->> 'currency' AS leg_currency,
               a.currency, a.slots
          FROM jsonb_array_elements(p_legs) WITH ORDINALITY AS e(l, n)
          JOIN ledger_accounts a ON a.id = (l ->> 'account_id')::BIGINT
         ORDER BY 1, e.n
    LOOP
        IF leg.amount = 0 THEN
            RAISE EXCEPTION 'a leg of zero is not allowed' USING ERRCODE = 'CP001';
        END IF;
        IF leg.leg_currency IS DISTINCT FROM leg.currency THEN
            RAISE EXCEPTION 'leg in % posted to ledger account % in %',
                leg.leg_currency, leg.account_id, leg.currency USING ERRCODE = 'CP005';
        END IF;
        v_slot := (v_slot_seed % leg.slots)::INTEGER;
        UPDATE ledger_balance_slots s SET balance = s.balance + leg.amount
         WHERE s.account_id = leg.account_id AND s.slot = v_slot
        RETURNING s.balance INTO v_balance;
        IF NOT FOUND THEN
            INSERT INTO ledger_balance_slots (account_id, slot, balance)
            VALUES (leg.account_id, v_slot, leg.amount)
            ON CONFLICT (account_id, slot)
                DO UPDATE SET balance = ledger_balance_slots.balance + EXCLUDED.balance
            RETURNING balance INTO v_balance;
        END IF;
        INSERT INTO ledger_entries (transaction_id, account_id, slot, currency, amount, balance_after)
        VALUES (v_tx, leg.account_id, v_slot, leg.currency, leg.amount, v_balance);
    END LOOP;

    RETURN QUERY SELECT v_tx, TRUE;
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS ledger_post(TEXT, TEXT, TIMESTAMPTZ, JSONB, JSONB);
DROP TABLE IF EXISTS earnings;
DROP TABLE IF EXISTS ledger_entries;
DROP TABLE IF EXISTS ledger_transactions;
DROP TABLE IF EXISTS ledger_balance_slots;
DROP TABLE IF EXISTS ledger_accounts;
DROP FUNCTION IF EXISTS ledger_append_only();
DROP FUNCTION IF EXISTS ledger_check_balanced();
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(DROP)
