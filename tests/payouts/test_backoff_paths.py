"""Every payout path gives one verdict on a coach: the job's candidate query and its
pre-filter (payouts/jobs.py), the one-statement reserve (payouts/sql.py), the exact
reserve (payouts/service.py) and connect.profile.payout_eligibility, for generated coaches
with every state the rules read, the refusal backoff included."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from connect.profile import backoff_over, payout_eligibility
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, TxType, post
from payouts.hotpath import reserve_due
from payouts.jobs import _CANDIDATES, SHARDS, _eligible
from payouts.models import Payout
from payouts.service import reserve
from tests.payouts.helpers import T0, make_coach

NOW = T0 + timedelta(days=10, hours=7)
_keys = itertools.count(1)


@dataclass(frozen=True)
class CoachState:
    schedule: str
    paused: bool
    payouts_enabled: bool
    available: int
    minimum: int
    last_paid_hours_ago: int | None
    open_payout: bool
    refusals: int
    retry_in_minutes: int | None  # payout_retry_at relative to now; None: no backoff


# Weighted towards coaches every other rule lets through, so the backoff decides often.
mostly = st.sampled_from([True, True, True, False])
states = st.builds(
    CoachState,
    schedule=st.sampled_from(["instant", "daily", "weekly", "monthly"]),
    paused=st.sampled_from([False, False, False, True]),
    payouts_enabled=mostly,
    available=st.sampled_from([9_000, 9_000, 0]) | st.integers(-2_000, 20_000),
    minimum=st.sampled_from([0, 0, 0, 5_000, 50_000]),
    last_paid_hours_ago=st.none() | st.none() | st.integers(0, 24 * 40),
    open_payout=st.sampled_from([False, False, False, True]),
    refusals=st.integers(0, 4),
    retry_in_minutes=st.none() | st.integers(-60 * 48, 60 * 48) | st.sampled_from([-1, 0, 1]),
)


async def _coach(db: AsyncSession, s: CoachState) -> int:
    coach = await make_coach(
        db,
        schedule=s.schedule,
        minimum={"usd": s.minimum} if s.minimum else None,
        payouts_enabled=s.payouts_enabled,
        paused=s.paused,
        in_transit=True,  # so the one-statement path can pay at all
    )
    retry_at = None if s.retry_in_minutes is None else NOW + timedelta(minutes=s.retry_in_minutes)
    await db.execute(
        text(
            "UPDATE coach_profiles SET payout_refusals = :n, payout_retry_at = :at "
            "WHERE user_id = :c"
        ),
        {"n": s.refusals, "at": retry_at, "c": coach},
    )
    await db.execute(
        text("UPDATE connect_accounts SET transfers_capability = 'active' WHERE coach_id = :c"),
        {"c": coach},
    )
    available = await get_account_id(db, AccountRef.coach(coach, Kind.AVAILABLE, "usd"))
    cash = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
    if s.available:
        await post(
            db,
            type=TxType.ADJUSTMENT,
            idempotency_key=f"test-available:{coach}:{next(_keys)}",
            occurred_at=NOW,
            legs=[Leg(cash, s.available, "usd"), Leg(available, -s.available, "usd")],
            coach_id=coach,
        )
    if s.last_paid_hours_ago is not None:
        await _payout_row(db, coach, "paid", NOW - timedelta(hours=s.last_paid_hours_ago))
    if s.open_payout:
        await _payout_row(db, coach, "pending", NOW - timedelta(minutes=1))
    return coach


async def _payout_row(db: AsyncSession, coach: int, status: str, at: datetime) -> None:
    await db.execute(
        text(
            "INSERT INTO payouts (coach_id, currency, amount, status, destination, "
            "stripe_transfer_id, created_at, updated_at) VALUES (:c, 'usd', 1, :s, 'acct_x', "
            ":tr, :t, :t)"
        ),
        {"c": coach, "s": status, "tr": f"tr_{next(_keys)}" if status == "paid" else None, "t": at},
    )


async def _rows(items: list[Any]) -> Any:
    for item in items:
        yield item


async def _verdicts(db: AsyncSession, coach: int, schedule: str) -> dict[str, bool]:
    params = {"shards": SHARDS, "shard": coach % SHARDS, "now": NOW, "after": 0, "limit": 10**6}
    rows = [r for r in (await db.execute(_CANDIDATES, params)).all() if r.coach_id == coach]
    prefilter = [r async for r in _eligible(_rows(rows), NOW)]
    out = {"candidate": bool(prefilter)}
    for name in ("fast", "general"):
        savepoint = await db.begin_nested()
        if name == "fast":
            made: object = await reserve_due(
                db, coach_id=coach, currency="usd", schedule=schedule, now=NOW
            )
        else:
            made = await reserve(db, coach_id=coach, currency="usd", now=NOW)
        out[name] = isinstance(made, Payout)
        await savepoint.rollback()
    return out


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(state=states)
async def test_every_path_gives_one_verdict(db: AsyncSession, state: CoachState) -> None:
    # Examples share the session: each in a savepoint, so none sees another's rows
    # and a failing one does not abort the transaction for those after it.
    example = await db.begin_nested()
    try:
        await _check(db, state)
    finally:
        await example.rollback()


async def _check(db: AsyncSession, state: CoachState) -> None:
    coach = await _coach(db, state)
    verdicts = await _verdicts(db, coach, state.schedule)
    assert len(set(verdicts.values())) == 1, (state, verdicts)
    backing_off = state.retry_in_minutes is not None and state.retry_in_minutes > 0
    if backing_off:
        assert not verdicts["general"]
    eligibility = await payout_eligibility(db, coach, now=NOW)
    coach_side = state.payouts_enabled and not state.paused and not backing_off
    assert eligibility.eligible == coach_side, (state, eligibility.reason)
    assert eligibility.payout_refusals == state.refusals
    retry_at = eligibility.payout_retry_at
    assert backoff_over(retry_at, NOW) == (not backing_off)
    if verdicts["general"]:
        assert coach_side


async def test_the_backoff_ends_at_its_instant(db: AsyncSession) -> None:
    """Exactly at payout_retry_at the coach may be paid again, on every path."""
    base = CoachState("instant", False, True, 9_000, 0, None, False, 2, 0)
    for minutes, paid in ((1, False), (0, True), (-1, True)):
        coach = await _coach(db, CoachState(**{**base.__dict__, "retry_in_minutes": minutes}))
        verdicts = await _verdicts(db, coach, "instant")
        assert set(verdicts.values()) == {paid}, (minutes, verdicts)
