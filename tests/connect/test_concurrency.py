"""Two concurrent onboarding calls (separate transactions, real commits) make one account."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from connect.models import ConnectAccount
from connect.service import OnboardingLink, ensure_profile, start_onboarding
from core.db import session_factory
from core.stripe_gateway import StripeGateway
from core.users import provision_user
from tests.connect.helpers import SETTINGS, T0, fresh_account
from tests.core.stripe_fixtures import account_link, stripe_api


async def test_concurrent_onboarding_creates_one_account(clean_engine: AsyncEngine) -> None:
    factory = session_factory(clean_engine)
    async with factory() as db, db.begin():
        coach = (await provision_user(db, sub="race-coach", role="coach", now=T0)).id
        # The profile exists already (e.g. an admin set the fee), so only the row
        # lock, not the profile insert, can keep the two calls apart.
        await ensure_profile(db, user_id=coach, settings=SETTINGS, now=T0)

    async def slow_create(request: httpx.Request) -> httpx.Response:
        # Hold the first caller inside Stripe so the second one surely overlaps.
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=fresh_account())

    async def onboard(gw: StripeGateway) -> OnboardingLink:
        async with factory() as db, db.begin():
            return await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)

    async with stripe_api() as (gw, api):
        create = api.post("/v1/accounts").mock(side_effect=slow_create)
        api.post("/v1/account_links").respond(200, json=account_link())
        results = await asyncio.gather(onboard(gw), onboard(gw))

    assert create.call_count == 1
    assert sorted(r.account_created for r in results) == [False, True]
    assert {r.stripe_account_id for r in results} == {"acct_1Coach"}
    async with factory() as db:
        count = await db.scalar(select(func.count()).select_from(ConnectAccount))
    assert count == 1


async def test_retry_after_a_crash_replays_the_same_stripe_account(
    clean_engine: AsyncEngine,
) -> None:
    """Stripe created the account but our transaction rolled back: the retry sends the
    same idempotency key, so Stripe (here: the mock keyed on it) answers the same account."""
    factory = session_factory(clean_engine)
    async with factory() as db, db.begin():
        coach = (await provision_user(db, sub="crash-coach", role="coach", now=T0)).id
    seen: dict[str, str] = {}

    def by_key(request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        seen.setdefault(key, f"acct_{len(seen) + 1}")
        return httpx.Response(200, json=fresh_account(seen[key]))

    async with stripe_api() as (gw, api):
        api.post("/v1/accounts").mock(side_effect=by_key)
        api.post("/v1/account_links").respond(200, json=account_link())
        async with factory() as db:
            await db.begin()
            await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
            await db.rollback()  # the crash
        async with factory() as db, db.begin():
            link = await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
    assert link.stripe_account_id == "acct_1" and len(seen) == 1
