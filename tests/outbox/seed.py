"""Rows for the trigger tests, written with plain SQL (the triggers see every writer alike)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_seq = itertools.count(1)


async def one(conn: AsyncSession, sql: str, **params: Any) -> Any:
    return (await conn.execute(text(sql), params)).scalar_one()


async def user(conn: AsyncSession, role: str) -> int:
    sub = f"outbox-{role}-{next(_seq)}"
    return int(
        await one(conn, "INSERT INTO users (sub, role) VALUES (:s, :r) RETURNING id", s=sub, r=role)
    )


async def coach(conn: AsyncSession, now: datetime, *, status: str = "active") -> int:
    coach_id = await user(conn, "coach")
    await conn.execute(text("INSERT INTO coach_profiles (user_id) VALUES (:u)"), {"u": coach_id})
    await conn.execute(
        text(
            "INSERT INTO connect_accounts (coach_id, stripe_account_id, status, payouts_enabled, "
            "created_at, updated_at) VALUES (:u, :a, :s, :p, :now, :now)"
        ),
        {"u": coach_id, "a": f"acct_outbox{coach_id}", "s": status, "p": status == "active",
         "now": now},
    )  # fmt: skip
    return coach_id


async def session(conn: AsyncSession, coach_id: int, now: datetime) -> int:
    return int(
        await one(
            conn,
            "INSERT INTO coaching_sessions (coach_id, title, starts_at, ends_at, price, currency, "
            "refund_window_hours, created_at, updated_at) VALUES (:c, 'Mock interview', :s, :e, "
            "10000, 'usd', 24, :now, :now) RETURNING id",
            c=coach_id,
            s=now + timedelta(days=3),
            e=now + timedelta(days=3, hours=1),
            now=now,
        )
    )


async def booking(conn: AsyncSession, session_id: int, coach_id: int, now: datetime) -> int:
    mentee = await user(conn, "mentee")
    return int(
        await one(
            conn,
            "INSERT INTO bookings (coaching_session_id, mentee_id, coach_id, amount, currency, "
            "fee_bps, created_at, updated_at) VALUES (:s, :m, :c, 10000, 'usd', 2000, :now, :now) "
            "RETURNING id",
            s=session_id,
            m=mentee,
            c=coach_id,
            now=now,
        )
    )


async def events(conn: AsyncSession) -> list[Any]:
    return list(
        (
            await conn.execute(
                text("SELECT type, occurred_at, data FROM outbox_events ORDER BY id")
            )
        ).all()
    )


async def ledger_tx(db: AsyncSession, key: str, now: datetime) -> int:
    """A balanced journal transaction for rows that must point at one (refunds)."""
    from ledger.accounts import AccountRef, Kind, get_account_id
    from ledger.posting import Leg, TxType, post

    cash = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
    fees = await get_account_id(db, AccountRef.platform(Kind.FEE_REVENUE, "usd"))
    posted = await post(
        db, type=TxType.ADJUSTMENT, idempotency_key=key, occurred_at=now,
        legs=[Leg(cash, -100, "usd"), Leg(fees, 100, "usd")],
    )  # fmt: skip
    return posted.transaction_id
