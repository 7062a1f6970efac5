"""Concurrent postings against the same hot platform accounts stay exact."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import session_factory
from core.money import split
from ledger.accounts import balance, coach_balances
from tests.ledger.helpers import PaymentAccounts, payment_accounts, post_payment

WORKERS = 8
PAYMENTS = 500
COACHES = 50


async def test_eight_workers_same_platform_accounts(clean_engine: AsyncEngine) -> None:
    factory = session_factory(clean_engine)
    accounts: dict[int, PaymentAccounts] = {}
    async with factory() as db, db.begin():
        for coach in range(1, COACHES + 1):
            accounts[coach] = await payment_accounts(db, coach)

    async def worker(w: int) -> None:
        for i in range(PAYMENTS):
            coach = (w * PAYMENTS + i) % COACHES + 1
            async with factory() as db, db.begin():
                await post_payment(db, accounts[coach], key=f"c:{w}:{i}", gross=1000 + i)

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))

    gross = fees = 0
    per_coach = dict.fromkeys(range(1, COACHES + 1), 0)
    for w in range(WORKERS):
        for i in range(PAYMENTS):
            s = split(1000 + i, 2000)
            gross += s.gross
            fees += s.platform_fee
            per_coach[(w * PAYMENTS + i) % COACHES + 1] += s.coach_share
    async with factory() as db:
        any_coach = accounts[1]
        assert await balance(db, any_coach.stripe) == gross
        assert await balance(db, any_coach.fees) == -fees
        for coach, share in per_coach.items():
            assert (await coach_balances(db, coach))["usd"]["pending"] == share
