"""Coach profile: defaults, validated admin changes (all or nothing, audited), eligibility."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.errors import CoachNotFound, InvalidProfileChange, NotACoach
from connect.models import CoachProfile
from connect.profile import payout_eligibility, update_profile
from connect.service import ensure_profile, start_onboarding
from core.audit import AuditEntry
from core.settings import Settings
from tests.connect.helpers import SETTINGS, T0, active_account, make_user
from tests.core.stripe_fixtures import account_link, stripe_api


async def profile_of(db: AsyncSession, coach: int) -> CoachProfile:
    stmt = select(CoachProfile).where(CoachProfile.user_id == coach)
    return (await db.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def test_defaults_come_from_settings_and_are_created_once(db: AsyncSession) -> None:
    coach = await make_user(db)
    custom = Settings(database_url="postgresql://x", platform_fee_bps=1500, hold_hours=24)
    first = await ensure_profile(db, user_id=coach, settings=custom, now=T0)
    again = await ensure_profile(db, user_id=coach, settings=SETTINGS, now=T0)
    assert (first.fee_bps, first.hold_hours) == (1500, 24)
    assert (again.fee_bps, again.hold_hours) == (1500, 24)  # not reset by the second call
    assert first.minimum_payout == {} and first.payout_schedule == "daily"


async def test_mentee_gets_no_profile(db: AsyncSession) -> None:
    mentee = await make_user(db, role="mentee")
    with pytest.raises(NotACoach):
        await ensure_profile(db, user_id=mentee, settings=SETTINGS, now=T0)


async def test_admin_change_is_applied_and_audited(db: AsyncSession) -> None:
    coach = await make_user(db)
    admin = await make_user(db, role="admin")
    await ensure_profile(db, user_id=coach, settings=SETTINGS, now=T0)
    await update_profile(
        db,
        coach_id=coach,
        changes={
            "fee_bps": 1000,
            "hold_hours": 2160,
            "payout_schedule": "weekly",
            "minimum_payout": {"usd": 5000, "jpy": 0},
            "payouts_paused": True,
            "payouts_paused_reason": "  KYC review  ",
        },
        actor_id=admin,
        now=T0,
    )
    p = await profile_of(db, coach)
    assert (p.fee_bps, p.hold_hours, p.payout_schedule) == (1000, 2160, "weekly")
    assert p.minimum_payout == {"usd": 5000, "jpy": 0}
    assert p.payouts_paused and p.payouts_paused_reason == "KYC review"
    entry = (
        await db.execute(
            select(AuditEntry).where(
                AuditEntry.action == "coach_profile.updated", AuditEntry.entity_id == str(coach)
            )
        )
    ).scalar_one()
    assert entry.actor_user_id == admin
    assert entry.before is not None and entry.after is not None
    assert entry.before["fee_bps"] == 2000 and entry.after["fee_bps"] == 1000

    await update_profile(
        db, coach_id=coach, changes={"payouts_paused": False}, actor_id=admin, now=T0
    )
    p = await profile_of(db, coach)
    assert not p.payouts_paused and p.payouts_paused_reason is None


async def test_a_change_to_the_same_values_writes_no_audit(db: AsyncSession) -> None:
    coach = await make_user(db)
    admin = await make_user(db, role="admin")
    await ensure_profile(db, user_id=coach, settings=SETTINGS, now=T0)
    await update_profile(db, coach_id=coach, changes={"fee_bps": 2000}, actor_id=admin, now=T0)
    count = await db.scalar(
        select(func.count()).where(
            AuditEntry.action == "coach_profile.updated", AuditEntry.entity_id == str(coach)
        )
    )
    assert count == 0


BAD: list[dict[str, Any]] = [
    {},
    {"fee_bps": -1},
    {"fee_bps": 10001},
    {"fee_bps": "2000"},
    {"fee_bps": 20.5},
    {"fee_bps": True},
    {"fee_bps": None},
    {"hold_hours": -1},
    {"hold_hours": 2161},
    {"hold_hours": 10**30},
    {"payout_schedule": "hourly"},
    {"payout_schedule": "DAILY"},
    {"payout_schedule": None},
    {"minimum_payout": -5},
    {"minimum_payout": {"usd": -1}},
    {"minimum_payout": {"USD": 100}},
    {"minimum_payout": {"xyz": 100}},
    {"minimum_payout": {"usd": 1.5}},
    {"minimum_payout": {"usd": 10**16}},
    {"minimum_payout": ["usd", 100]},
    {"payouts_paused": "yes"},
    {"payouts_paused": True},  # no reason
    {"payouts_paused": True, "payouts_paused_reason": "   "},
    {"payouts_paused_reason": "not paused"},
    {"payouts_paused": True, "payouts_paused_reason": "x" * 501},
    {"payouts_paused": True, "payouts_paused_reason": "bad\x00byte"},
    {"payouts_paused": True, "payouts_paused_reason": 42},
    {"fee_bps": 100, "user_id": 1},
    {"stripe_account_id": "acct_x"},
    {"fee_bps": 100, "hold_hours": -1},  # one bad field: nothing applied
]


@pytest.mark.parametrize("changes", BAD, ids=[str(b)[:60] for b in BAD])
async def test_invalid_change_is_refused_and_changes_nothing(
    db: AsyncSession, changes: dict[str, Any]
) -> None:
    coach = await make_user(db)
    admin = await make_user(db, role="admin")
    await ensure_profile(db, user_id=coach, settings=SETTINGS, now=T0)
    with pytest.raises(InvalidProfileChange):
        await update_profile(db, coach_id=coach, changes=changes, actor_id=admin, now=T0)
    p = await profile_of(db, coach)
    assert (p.fee_bps, p.hold_hours, p.payout_schedule) == (2000, 72, "daily")
    assert p.minimum_payout == {} and not p.payouts_paused and p.payouts_paused_reason is None


async def test_unknown_coach_is_not_found(db: AsyncSession) -> None:
    admin = await make_user(db, role="admin")
    with pytest.raises(CoachNotFound):
        await update_profile(db, coach_id=99999999, changes={"fee_bps": 1}, actor_id=admin, now=T0)


async def test_payout_eligibility_follows_account_and_pause(db: AsyncSession) -> None:
    coach = await make_user(db)
    admin = await make_user(db, role="admin")
    await ensure_profile(db, user_id=coach, settings=SETTINGS, now=T0)
    before = await payout_eligibility(db, coach)
    assert not before.eligible and before.reason == "no Connect account"
    async with stripe_api() as (gw, api):
        api.post("/v1/accounts").respond(200, json=active_account())
        api.post("/v1/account_links").respond(200, json=account_link())
        await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
    ready = await payout_eligibility(db, coach)
    assert ready.eligible and ready.stripe_account_id == "acct_1Coach"
    assert ready.minimum_for("usd") == 0 and ready.fee_bps == 2000 and ready.hold_hours == 72
    await update_profile(
        db,
        coach_id=coach,
        changes={"payouts_paused": True, "payouts_paused_reason": "chargebacks"},
        actor_id=admin,
        now=T0,
    )
    paused = await payout_eligibility(db, coach)
    assert not paused.eligible and paused.reason == "payouts paused: chargebacks"
