"""The balance read model: one statement, the user found only when provisioning would
merely read the row, next release from the pending earnings only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import driver_fetch
from payouts.views import coach_balance, coach_balance_of_sub
from tests.payouts import totals_support as ts
from tests.payouts.helpers import T0, add_earning, make_coach

SEEN = T0 - timedelta(minutes=5)


async def _user(db: AsyncSession, sub: str, role: str = "coach", email: str | None = None) -> int:
    return int(
        (
            await db.execute(
                text(
                    "INSERT INTO users (sub, role, email, created_at, last_seen_at) "
                    "VALUES (:s, :r, :e, :t, :t) RETURNING id"
                ),
                {"s": sub, "r": role, "e": email, "t": T0},
            )
        ).scalar_one()
    )


async def test_next_release_is_the_earliest_pending_instant_and_all_due_then(
    db: AsyncSession,
) -> None:
    [coach] = ts.new_coaches(1)
    await ts.earn(db, coach, "usd", 1000, 5)
    await ts.earn(db, coach, "usd", 2000, 5)  # same instant: both count
    await ts.earn(db, coach, "usd", 4000, 9)
    await ts.earn(db, coach, "usd", 8000, 2)  # earliest, but released below
    await ts.earn(db, coach, "eur", 300, 7)
    await ts.release(db, ts.World([coach]), 3)
    await ts.refund_before_release(db, ts.World([coach]), 0, 250)  # the first earning
    eur, usd = await coach_balance(db, coach)
    assert (eur.currency, usd.currency) == ("eur", "usd")
    assert usd.next_release_at == T0 + timedelta(hours=5)
    assert usd.next_release_amount == 1000 - 250 + 2000
    assert usd.lifetime_earnings == 15_000 - 250
    assert (eur.next_release_at, eur.next_release_amount) == (T0 + timedelta(hours=7), 300)


async def test_ledger_balances_come_with_the_totals(db: AsyncSession) -> None:
    coach = await make_coach(db)
    await add_earning(db, coach, gross=10_000)
    await add_earning(db, coach, gross=5_000, reduced=1_000)
    [bal] = await coach_balance(db, coach)
    assert (bal.pending, bal.available, bal.in_transit) == (8000 + 4000 - 1000, 0, 0)
    assert bal.lifetime_earnings == bal.pending and bal.paid_out == 0


async def test_by_sub_finds_a_known_recent_user_and_its_balance(db: AsyncSession) -> None:
    coach = await _user(db, "sub-known", email="c@example.com")
    await add_earning(db, coach, gross=10_000)
    for email in (None, "c@example.com"):
        found = await coach_balance_of_sub(
            driver_fetch(db), sub="sub-known", role="coach", email=email, seen_after=SEEN
        )
        assert found == (coach, await coach_balance(db, coach))
    fresh = await _user(db, "sub-nothing")
    found = await coach_balance_of_sub(
        driver_fetch(db), sub="sub-nothing", role="coach", email=None, seen_after=SEEN
    )
    assert found == (fresh, [])  # a coach with no money yet: found, nothing to show


@pytest.mark.parametrize(
    ("sub", "role", "email", "seen_after"),
    [
        ("sub-other", "coach", None, SEEN),  # never seen: provision
        ("sub-x", "mentee", None, SEEN),  # the token's role changed: provision updates it
        ("sub-x", "coach", "new@example.com", SEEN),  # a new email: provision stores it
        ("sub-x", "coach", None, T0),  # not seen lately: provision refreshes last_seen_at
        ("sub-x'; --", "coach", None, SEEN),  # hostile sub: a parameter, no match
    ],
)
async def test_by_sub_leaves_every_other_case_to_provisioning(
    db: AsyncSession, sub: str, role: str, email: str | None, seen_after: object
) -> None:
    await _user(db, "sub-x", email="old@example.com")
    found = await coach_balance_of_sub(
        driver_fetch(db),
        sub=sub,
        role=role,
        email=email,
        seen_after=seen_after,  # type: ignore[arg-type]
    )
    assert found is None
