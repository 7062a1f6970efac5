"""The database itself rejects bad ledger writes, even ones that bypass ``post``."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import session_factory
from tests.ledger.helpers import payment_accounts, post_payment


async def _setup(eng: AsyncEngine) -> tuple[int, int, int]:
    async with session_factory(eng)() as db, db.begin():
        a = await payment_accounts(db, coach_id=1)
        await post_payment(db, a, key="guard:ok", gross=1000)
        tx = (await db.execute(text("SELECT max(id) FROM ledger_transactions"))).scalar_one()
        return a.stripe, a.pending, int(tx)


async def _count(eng: AsyncEngine, table: str) -> int:
    async with eng.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def _raw_tx(conn: object, key: str) -> int:
    row = await conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO ledger_transactions (type, idempotency_key, legs_signature, occurred_at) "
            "VALUES ('adjustment', :k, 'x', now()) RETURNING id"
        ),
        {"k": key},
    )
    return int(row.scalar_one())


async def test_unbalanced_transaction_rejected_at_commit(clean_engine: AsyncEngine) -> None:
    stripe, pending, _ = await _setup(clean_engine)
    entries = await _count(clean_engine, "ledger_entries")
    with pytest.raises(DBAPIError, match="unbalanced"):
        async with clean_engine.begin() as conn:
            tx = await _raw_tx(conn, "raw:unbalanced")
            for acct, amt in ((stripe, 100), (pending, -99)):
                await conn.execute(
                    text(
                        "INSERT INTO ledger_entries (transaction_id, account_id, slot, currency, "
                        "amount, balance_after) VALUES (:t, :a, 0, 'usd', :m, 0)"
                    ),
                    {"t": tx, "a": acct, "m": amt},
                )
            # The statement itself succeeds: the deferred trigger fires at commit.
    assert await _count(clean_engine, "ledger_entries") == entries


async def test_transaction_without_legs_rejected_at_commit(clean_engine: AsyncEngine) -> None:
    await _setup(clean_engine)
    with pytest.raises(DBAPIError, match="at least two"):
        async with clean_engine.begin() as conn:
            await _raw_tx(conn, "raw:empty")
    assert await _count(clean_engine, "ledger_transactions") == 1


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET type = 'refund'",
        "DELETE FROM ledger_transactions",
    ],
)
async def test_entries_and_transactions_are_append_only(
    clean_engine: AsyncEngine, sql: str
) -> None:
    await _setup(clean_engine)
    with pytest.raises(DBAPIError, match="append only"):
        async with clean_engine.begin() as conn:
            await conn.execute(text(sql))
    assert await _count(clean_engine, "ledger_entries") == 3


async def test_leg_currency_must_match_account(clean_engine: AsyncEngine) -> None:
    stripe, pending, _ = await _setup(clean_engine)
    with pytest.raises(DBAPIError, match="fk_ledger_entries_account_currency"):
        async with clean_engine.begin() as conn:
            tx = await _raw_tx(conn, "raw:currency")
            for acct, amt in ((stripe, 100), (pending, -100)):
                await conn.execute(
                    text(
                        "INSERT INTO ledger_entries (transaction_id, account_id, slot, currency, "
                        "amount, balance_after) VALUES (:t, :a, 0, 'eur', :m, 0)"
                    ),
                    {"t": tx, "a": acct, "m": amt},
                )
    assert await _count(clean_engine, "ledger_entries") == 3
