"""account.updated: re-read from Stripe, never move the record backwards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import ConnectAccount
from connect.service import start_onboarding, sync_account
from connect.webhooks import on_account_updated, register_handlers
from core.audit import AuditEntry
from core.clock import FrozenClock
from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_gateway import StripeGateway
from core.stripe_types import StripeAccount, StripeEvent
from tests.connect.helpers import (
    SETTINGS,
    T0,
    active_account,
    fresh_account,
    make_user,
    restricted_account,
)
from tests.core.stripe_fixtures import account_link, stripe_api


def account_event(event_id: str, snapshot: dict[str, Any], created: int) -> StripeEvent:
    return StripeEvent.from_dict(
        {
            "id": event_id,
            "object": "event",
            "type": "account.updated",
            "account": snapshot["id"],
            "created": created,
            "livemode": False,
            "data": {"object": snapshot, "previous_attributes": {}},
        }
    )


async def onboarded(db: AsyncSession, gw: StripeGateway, api: Any) -> int:
    coach = await make_user(db)
    api.post("/v1/accounts").respond(200, json=fresh_account())
    api.post("/v1/account_links").respond(200, json=account_link())
    await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
    return coach


async def row_of(db: AsyncSession, coach: int) -> ConnectAccount:
    stmt = select(ConnectAccount).where(ConnectAccount.coach_id == coach)
    return (await db.execute(stmt.execution_options(populate_existing=True))).scalar_one()


def test_register_handlers_registers_account_updated() -> None:
    registry = HandlerRegistry()
    register_handlers(registry)
    assert registry.handlers_for("account.updated") == (on_account_updated,)


async def test_event_rereads_the_account_instead_of_trusting_its_snapshot(
    db: AsyncSession,
) -> None:
    clock = FrozenClock(T0)
    async with stripe_api() as (gw, api):
        coach = await onboarded(db, gw, api)
        ctx = HandlerContext(gateway=gw, clock=clock, settings=SETTINGS)
        retrieve = api.get("/v1/accounts/acct_1Coach").respond(200, json=active_account())
        clock.advance(timedelta(minutes=5))
        # The snapshot says "restricted"; Stripe, asked now, says active.
        await on_account_updated(db, account_event("evt_1", restricted_account(), 1), ctx)
        assert retrieve.call_count == 1
    row = await row_of(db, coach)
    assert row.status == "active"
    assert row.payouts_enabled and row.transfers_capability == "active"
    assert row.synced_at == T0 + timedelta(minutes=5)
    audit = (
        (
            await db.execute(
                select(AuditEntry).where(
                    AuditEntry.entity_type == "connect_account", AuditEntry.entity_id == str(row.id)
                )
            )
        )
        .scalars()
        .all()
    )
    changed = [a for a in audit if a.action == "connect_account.status_changed"]
    assert len(changed) == 1
    assert changed[0].cause == "evt_1" and changed[0].actor_kind == "stripe"
    assert changed[0].before == {"status": "onboarding"}
    assert changed[0].after == {"status": "active", "disabled_reason": None}


async def test_replayed_old_event_does_not_undo_a_newer_state(db: AsyncSession) -> None:
    clock = FrozenClock(T0)
    async with stripe_api() as (gw, api):
        coach = await onboarded(db, gw, api)
        ctx = HandlerContext(gateway=gw, clock=clock, settings=SETTINGS)
        api.get("/v1/accounts/acct_1Coach").respond(200, json=active_account())
        old = account_event("evt_old", fresh_account(), 100)
        new = account_event("evt_new", active_account(), 200)
        clock.advance(timedelta(minutes=1))
        await on_account_updated(db, new, ctx)
        clock.advance(timedelta(minutes=1))
        await on_account_updated(db, old, ctx)
        await on_account_updated(db, old, ctx)
    row = await row_of(db, coach)
    assert row.status == "active"
    changes = (
        (
            await db.execute(
                select(AuditEntry.cause).where(
                    AuditEntry.action == "connect_account.status_changed",
                    AuditEntry.entity_id == str(row.id),
                )
            )
        )
        .scalars()
        .all()
    )
    assert changes == ["evt_new"]  # the replays changed nothing


async def test_state_observed_before_the_stored_one_is_ignored(db: AsyncSession) -> None:
    async with stripe_api() as (gw, api):
        coach = await onboarded(db, gw, api)
    newer = StripeAccount.from_dict(active_account())
    older = StripeAccount.from_dict(restricted_account())
    first = await sync_account(db, stripe_account=newer, now=T0 + timedelta(minutes=2))
    assert first is not None and first.changed
    late = await sync_account(
        db,
        stripe_account=older,
        now=T0 + timedelta(minutes=3),
        observed_at=T0 + timedelta(minutes=1),
    )
    assert late is not None and late.stale and not late.changed
    assert (await row_of(db, coach)).status == "active"


async def test_account_goes_restricted_then_active_again(db: AsyncSession) -> None:
    clock = FrozenClock(T0)
    async with stripe_api() as (gw, api):
        coach = await onboarded(db, gw, api)
        ctx = HandlerContext(gateway=gw, clock=clock, settings=SETTINGS)
        route = api.get("/v1/accounts/acct_1Coach")
        for body, expected in [
            (active_account(), "active"),
            (restricted_account(), "restricted"),
            (active_account(), "active"),
        ]:
            route.respond(200, json=body)
            clock.advance(timedelta(seconds=1))
            await on_account_updated(db, account_event("evt_x", body, 1), ctx)
            row = await row_of(db, coach)
            assert row.status == expected
    assert row.requirements_past_due == []


async def test_unknown_account_is_ignored_without_calling_stripe(db: AsyncSession) -> None:
    async with stripe_api() as (gw, api):
        retrieve = api.get("/v1/accounts/acct_someone_else").respond(
            200, json=active_account("acct_someone_else")
        )
        ctx = HandlerContext(gateway=gw, clock=FrozenClock(T0), settings=SETTINGS)
        event = account_event("evt_9", active_account("acct_someone_else"), 1)
        await on_account_updated(db, event, ctx)
    assert retrieve.call_count == 0
    assert (
        await sync_account(
            db, stripe_account=StripeAccount.from_dict(active_account("acct_nope")), now=T0
        )
        is None
    )
