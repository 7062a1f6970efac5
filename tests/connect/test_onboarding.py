"""Onboarding against a respx-mocked Stripe: one account per coach, fresh links, the view."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.errors import AccountDisabled, CoachNotFound, InvalidLinkToken, NotACoach
from connect.models import CoachProfile, ConnectAccount
from connect.service import (
    complete_return,
    get_account_view,
    refresh_onboarding,
    start_onboarding,
)
from core.audit import AuditEntry
from core.stripe_errors import StripeOutcomeUnknown
from tests.connect.helpers import (
    SETTINGS,
    T0,
    active_account,
    fresh_account,
    make_user,
    rejected_account,
)
from tests.core.stripe_fixtures import account_link, form, login_link, stripe_api


async def test_first_call_creates_account_and_profile_then_reuses_them(db: AsyncSession) -> None:
    coach = await make_user(db, email="c@example.com")
    async with stripe_api() as (gw, api):
        create = api.post("/v1/accounts").respond(200, json=fresh_account())
        links = api.post("/v1/account_links").respond(200, json=account_link())
        first = await start_onboarding(
            db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0, country="FR"
        )
        second = await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
    assert create.call_count == 1
    assert links.call_count == 2
    sent = form(create.calls.last.request)
    assert create.calls.last.request.headers["Idempotency-Key"] == (
        f"coachpay:connect-account:{coach}"
    )
    assert sent["controller[stripe_dashboard][type]"] == "express"
    assert sent["controller[fees][payer]"] == "application"
    assert sent["controller[losses][payments]"] == "application"
    assert sent["capabilities[transfers][requested]"] == "true"
    assert sent["country"] == "FR"
    assert sent["email"] == "c@example.com"
    assert sent["metadata[coach_id]"] == str(coach)
    assert first.account_created and not second.account_created
    assert first.stripe_account_id == second.stripe_account_id == "acct_1Coach"
    assert first.url == account_link()["url"]
    assert first.status == "onboarding"

    profile = await db.get(CoachProfile, coach)
    assert profile is not None
    assert (profile.fee_bps, profile.hold_hours, profile.payout_schedule) == (2000, 72, "daily")
    assert profile.minimum_payout == {} and profile.payouts_paused is False
    count = await db.scalar(select(func.count()).where(ConnectAccount.coach_id == coach))
    assert count == 1
    audit = await db.scalar(
        select(func.count()).where(
            AuditEntry.action == "connect_account.created", AuditEntry.actor_user_id == coach
        )
    )
    assert audit == 1


async def test_links_come_back_to_signed_refresh_and_return_urls(db: AsyncSession) -> None:
    coach = await make_user(db)
    async with stripe_api() as (gw, api):
        api.post("/v1/accounts").respond(200, json=fresh_account())
        links = api.post("/v1/account_links").respond(200, json=account_link())
        await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
        sent = form(links.calls.last.request)
        assert sent["type"] == "account_onboarding"
        assert sent["account"] == "acct_1Coach"
        refresh = urlsplit(sent["refresh_url"])
        ret = urlsplit(sent["return_url"])
        assert (refresh.netloc, refresh.path) == (
            "coachpay.test",
            "/v1/coaches/me/onboarding/refresh",
        )
        assert ret.path == "/v1/coaches/me/onboarding/return"
        token = parse_qs(refresh.query)["token"][0]

        again = await refresh_onboarding(db, token=token, gateway=gw, settings=SETTINGS, now=T0)
        assert again.stripe_account_id == "acct_1Coach" and not again.account_created
        assert links.call_count == 2


@pytest.mark.parametrize(
    "token",
    [None, "", "abc", "1.2.3", "1.99999999999.deadbeef", "x" * 5000, "1.2.3.4", "-1.2.ab"],
)
async def test_refresh_with_a_bad_token_is_refused(db: AsyncSession, token: str | None) -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/account_links").respond(200, json=account_link())
        with pytest.raises(InvalidLinkToken):
            await refresh_onboarding(db, token=token, gateway=gw, settings=SETTINGS, now=T0)
    assert route.call_count == 0


async def test_token_of_another_secret_or_expired_is_refused(db: AsyncSession) -> None:
    from datetime import timedelta

    from connect.links import sign_link_token, verify_link_token

    token = sign_link_token(7, secret="other-secret", now=T0)
    with pytest.raises(InvalidLinkToken):
        verify_link_token(token, secret="coachpay-secret", now=T0)
    good = sign_link_token(7, secret="s", now=T0)
    assert verify_link_token(good, secret="s", now=T0 + timedelta(days=6)) == 7
    with pytest.raises(InvalidLinkToken):
        verify_link_token(good, secret="s", now=T0 + timedelta(days=8))


@pytest.mark.parametrize("role", ["mentee", "finance", "admin"])
async def test_only_coaches_onboard(db: AsyncSession, role: str) -> None:
    user = await make_user(db, role=role)
    async with stripe_api() as (gw, api):
        create = api.post("/v1/accounts").respond(200, json=fresh_account())
        with pytest.raises(NotACoach):
            await start_onboarding(db, coach_id=user, gateway=gw, settings=SETTINGS, now=T0)
    assert create.call_count == 0
    assert await db.get(CoachProfile, user) is None


async def test_unknown_user_is_not_found(db: AsyncSession) -> None:
    async with stripe_api() as (gw, _):
        with pytest.raises(CoachNotFound):
            await start_onboarding(db, coach_id=987654321, gateway=gw, settings=SETTINGS, now=T0)


async def test_stripe_failure_on_create_writes_no_account(db: AsyncSession) -> None:
    coach = await make_user(db)
    async with stripe_api(max_retries=1) as (gw, api):
        api.post("/v1/accounts").mock(side_effect=httpx.ConnectError("down"))
        with pytest.raises(StripeOutcomeUnknown):
            await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
    count = await db.scalar(select(func.count()).where(ConnectAccount.coach_id == coach))
    assert count == 0


async def test_disabled_account_gets_no_new_link(db: AsyncSession) -> None:
    coach = await make_user(db)
    async with stripe_api() as (gw, api):
        api.post("/v1/accounts").respond(200, json=rejected_account())
        links = api.post("/v1/account_links").respond(200, json=account_link())
        with pytest.raises(AccountDisabled):
            await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
    assert links.call_count == 0


async def test_view_before_onboarding_is_not_started(db: AsyncSession) -> None:
    coach = await make_user(db)
    view = await get_account_view(db, coach_id=coach, gateway=None)
    assert view.status == "not_started" and view.stripe_account_id is None


async def test_return_rereads_the_account_and_active_view_has_dashboard_link(
    db: AsyncSession,
) -> None:
    coach = await make_user(db)
    async with stripe_api() as (gw, api):
        api.post("/v1/accounts").respond(200, json=fresh_account())
        links = api.post("/v1/account_links").respond(200, json=account_link())
        await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
        view = await get_account_view(db, coach_id=coach, gateway=gw)
        assert view.status == "onboarding" and view.dashboard_url is None
        assert view.requirements_past_due == ("external_account",)

        token = parse_qs(urlsplit(form(links.calls.last.request)["return_url"]).query)["token"][0]
        api.get("/v1/accounts/acct_1Coach").respond(200, json=active_account())
        login = api.post("/v1/accounts/acct_1Coach/login_links").respond(200, json=login_link())
        view = await complete_return(db, token=token, gateway=gw, settings=SETTINGS, now=T0)
    assert view.status == "active"
    assert view.charges_enabled and view.payouts_enabled
    assert view.requirements_currently_due == ()
    assert view.dashboard_url == login_link()["url"]
    assert login.call_count == 1


async def test_view_survives_a_failing_login_link(db: AsyncSession) -> None:
    coach = await make_user(db)
    async with stripe_api(max_retries=0) as (gw, api):
        api.post("/v1/accounts").respond(200, json=active_account())
        api.post("/v1/account_links").respond(200, json=account_link())
        await start_onboarding(db, coach_id=coach, gateway=gw, settings=SETTINGS, now=T0)
        api.post("/v1/accounts/acct_1Coach/login_links").respond(500, json={"error": {}})
        view = await get_account_view(db, coach_id=coach, gateway=gw)
    assert view.status == "active" and view.dashboard_url is None
