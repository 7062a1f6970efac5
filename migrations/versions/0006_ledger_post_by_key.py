"""ledger_post() reads each leg's account by primary key.

The first version joined the legs to ``ledger_accounts``, which PostgreSQL
planned as a hash of the whole accounts table: every posting got slower as
coaches were added. Same behaviour and errors, index lookups only.

Revision ID: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BY_KEY = r"""
-- Posting in one round trip. Legs are [{"account_id": .., "amount": .., "currency": ..}, ..].
-- Returns the transaction id and whether it was created now (false: the
-- same idempotency key with the same legs was posted before).
-- Each leg's account is read by primary key inside the loop: a join of the
-- legs (jsonb_array_elements, estimated at 100 rows) to ledger_accounts was
-- planned as a hash of the whole accounts table, so a posting got slower
-- with every coach (0.8 ms at 6,000 accounts, 0.2 ms by key).
CREATE OR REPLACE FUNCTION ledger_post(
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
    v_currency TEXT;
    v_slots INTEGER;
BEGIN
    IF jsonb_typeof(p_legs) IS DISTINCT FROM 'array' OR jsonb_array_length(p_legs) < 2 THEN
        RAISE EXCEPTION 'a ledger transaction needs at least two legs' USING ERRCODE = 'CP001';
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
               l ->> 'currency' AS leg_currency
          FROM jsonb_array_elements(p_legs) WITH ORDINALITY AS e(l, n)
         ORDER BY 1, e.n
    LOOP
        SELECT a.currency, a.slots INTO v_currency, v_slots
          FROM ledger_accounts a WHERE a.id = leg.account_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger account % does not exist', leg.account_id
                USING ERRCODE = 'CP004';
        END IF;
        IF leg.amount = 0 THEN
            RAISE EXCEPTION 'a leg of zero is not allowed' USING ERRCODE = 'CP001';
        END IF;
        IF leg.leg_currency IS DISTINCT FROM v_currency THEN
            RAISE EXCEPTION 'leg in % posted to ledger account % in %',
                leg.leg_currency, leg.account_id, v_currency USING ERRCODE = 'CP005';
        END IF;
        v_slot := (v_slot_seed % v_slots)::INTEGER;
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
        VALUES (v_tx, leg.account_id, v_slot, v_currency, leg.amount, v_balance);
    END LOOP;

    RETURN QUERY SELECT v_tx, TRUE;
END $$;
"""

JOINED = r"""
-- Posting in one round trip. Legs are [{"account_id": .., "amount": .., "currency": ..}, ..].
-- Returns the transaction id and whether it was created now (false: the
-- same idempotency key with the same legs was posted before).
CREATE OR REPLACE FUNCTION ledger_post(
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


def upgrade() -> None:
    op.execute(BY_KEY)


def downgrade() -> None:
    op.execute(JOINED)
