"""A Connect account Stripe made for a request whose commit we lost, found past the 24 h
idempotency window instead of a second account being created (respx-mocked Stripe)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import ConnectAccount
from connect.service import REQUESTED, note_account_request, start_onboarding
from core.audit import AuditEntry
from tests.connect.helpers import SETTINGS, T0, fresh_account, make_user
from tests.core.stripe_fixtures import account, account_link, stripe_api


def _page(*accounts: dict[str, Any], more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": list(accounts), "has_more": more, "url": "/v1/accounts"}


async def _requests(db: AsyncSession, coach: int) -> int:
    stmt = select(func.count()).where(
        AuditEntry.action == REQUESTED, AuditEntry.entity_id == str(coach)
    )
    return int((await db.execute(stmt)).scalar_one())


async def test_the_request_is_noted_once_and_not_once_an_account_exists(db: AsyncSession) -> None:
    coach = await make_user(db)
    assert await note_account_request(db, coach_id=coach, now=T0)
    assert not await note_account_request(db, coach_id=coach, now=T0 + timedelta(hours=1))
    assert await _requests(db, coach) == 1
    other = await make_user(db)
    async with stripe_api() as (gw, api):
        api.post("/v1/accounts").respond(200, json=fresh_account("acct_1Other"))
        api.post("/v1/account_links").respond(200, json=account_link())
        await start_onboarding(db, coach_id=other, gateway=gw, settings=SETTINGS, now=T0)
    assert not await note_account_request(db, coach_id=other, now=T0)
    assert await _requests(db, other) == 0


async def test_within_the_window_the_idempotency_key_replays_and_nothing_is_listed(
    db: AsyncSession,
) -> None:
    coach = await make_user(db)
    await note_account_request(db, coach_id=coach, now=T0)
    async with stripe_api() as (gw, api):
        listing = api.get("/v1/accounts").respond(200, json=_page())
        create = api.post("/v1/accounts").respond(200, json=fresh_account())
        api.post("/v1/account_links").respond(200, json=account_link())
        link = await start_onboarding(
            db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0 + timedelta(hours=22)
        )
    assert listing.call_count == 0 and create.call_count == 1
    assert link.stripe_account_id == "acct_1Coach"


async def test_past_the_window_the_account_made_earlier_is_adopted(db: AsyncSession) -> None:
    coach = await make_user(db)
    await note_account_request(db, coach_id=coach, now=T0)
    mine = account("acct_1Lost", metadata={"coach_id": str(coach)})
    someone = account("acct_1Someone", metadata={"coach_id": str(coach + 1)})
    async with stripe_api() as (gw, api):
        listing = api.get("/v1/accounts").mock(
            side_effect=[
                httpx.Response(200, json=_page(someone, more=True)),
                httpx.Response(200, json=_page(mine)),
            ]
        )
        create = api.post("/v1/accounts").respond(200, json=fresh_account())
        api.post("/v1/account_links").respond(200, json=account_link())
        link = await start_onboarding(
            db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0 + timedelta(hours=30)
        )
    assert create.call_count == 0 and listing.call_count == 2
    # The second page starts after the last account of the first.
    assert listing.calls[1].request.url.params["starting_after"] == "acct_1Someone"
    assert link.stripe_account_id == "acct_1Lost"
    rows = (await db.execute(select(ConnectAccount).where(ConnectAccount.coach_id == coach))).all()
    assert len(rows) == 1


async def test_past_the_window_with_nothing_found_an_account_is_created(
    db: AsyncSession,
) -> None:
    coach = await make_user(db)
    await note_account_request(db, coach_id=coach, now=T0)
    async with stripe_api() as (gw, api):
        listing = api.get("/v1/accounts").respond(200, json=_page(account("acct_1X", metadata={})))
        create = api.post("/v1/accounts").respond(200, json=fresh_account("acct_1New"))
        api.post("/v1/account_links").respond(200, json=account_link())
        link = await start_onboarding(
            db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0 + timedelta(days=3)
        )
    assert listing.call_count == 1 and create.call_count == 1
    assert link.stripe_account_id == "acct_1New" and link.account_created
