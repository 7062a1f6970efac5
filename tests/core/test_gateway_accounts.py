"""Connect accounts, onboarding links and Express login links."""

from __future__ import annotations

import httpx

from core.stripe_types import AccountLink, LoginLink, StripeAccount
from tests.core.stripe_fixtures import (
    CREATED,
    account,
    account_link,
    assert_read,
    assert_write,
    login_link,
    stripe_api,
)


async def test_create_account_sends_express_controller_and_key() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/accounts").respond(200, json=account())
        result = await gw.create_account(
            email="coach@example.com",
            country="US",
            default_currency="usd",
            metadata={"coach_id": "42"},
            idempotency_key="coachpay:account:42",
        )
    assert route.call_count == 1
    fields = assert_write(route.calls.last.request, "POST", "/v1/accounts", "coachpay:account:42")
    assert fields == {
        "email": "coach@example.com",
        "country": "US",
        "default_currency": "usd",
        "metadata[coach_id]": "42",
        "controller[stripe_dashboard][type]": "express",
        "controller[fees][payer]": "application",
        "controller[losses][payments]": "application",
        "capabilities[transfers][requested]": "true",
    }
    assert result == StripeAccount(
        id="acct_1Coach",
        email="coach@example.com",
        country="US",
        default_currency="usd",
        charges_enabled=False,
        payouts_enabled=False,
        details_submitted=False,
        requirements_currently_due=("external_account", "tos_acceptance.date"),
        requirements_past_due=("external_account",),
        requirements_eventually_due=("external_account", "individual.ssn_last_4"),
        disabled_reason="requirements.past_due",
        transfers_capability="pending",
        metadata={"coach_id": "42"},
        created=CREATED,
    )
    assert not result.can_receive_transfers


async def test_create_account_omits_unset_default_currency() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/accounts").respond(200, json=account())
        await gw.create_account(
            email=None, country="FR", metadata={}, idempotency_key="coachpay:account:43"
        )
    fields = assert_write(route.calls.last.request, "POST", "/v1/accounts", "coachpay:account:43")
    assert "default_currency" not in fields
    assert "email" not in fields
    assert fields["country"] == "FR"


async def test_retrieve_account_parses_an_onboarded_account() -> None:
    onboarded = account(
        charges_enabled=True,
        payouts_enabled=True,
        details_submitted=True,
        capabilities={"transfers": "active"},
        requirements={
            "currently_due": [],
            "past_due": [],
            "eventually_due": [],
            "disabled_reason": None,
        },
    )
    async with stripe_api() as (gw, api):
        route = api.get("/v1/accounts/acct_1Coach").respond(200, json=onboarded)
        result = await gw.retrieve_account("acct_1Coach")
    assert assert_read(route.calls.last.request, "/v1/accounts/acct_1Coach") == {}
    assert result.payouts_enabled and result.details_submitted and result.charges_enabled
    assert result.transfers_capability == "active"
    assert result.can_receive_transfers
    assert result.requirements_currently_due == ()
    assert result.disabled_reason is None


async def test_update_account_sends_metadata_with_key() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/accounts/acct_1Coach").respond(
            200, json=account(metadata={"coach_id": "42", "tier": "gold"})
        )
        result = await gw.update_account(
            "acct_1Coach", metadata={"tier": "gold"}, idempotency_key="coachpay:acct-meta:42:1"
        )
    request = route.calls.last.request
    fields = assert_write(request, "POST", "/v1/accounts/acct_1Coach", "coachpay:acct-meta:42:1")
    assert fields == {"metadata[tier]": "gold"}
    assert result.metadata == {"coach_id": "42", "tier": "gold"}


async def test_create_account_link_for_onboarding() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/account_links").respond(200, json=account_link())
        result = await gw.create_account_link(
            account_id="acct_1Coach",
            refresh_url="https://coachpay.test/refresh",
            return_url="https://coachpay.test/return",
            idempotency_key="coachpay:link:42:1",
        )
    fields = assert_write(
        route.calls.last.request, "POST", "/v1/account_links", "coachpay:link:42:1"
    )
    assert fields == {
        "account": "acct_1Coach",
        "refresh_url": "https://coachpay.test/refresh",
        "return_url": "https://coachpay.test/return",
        "type": "account_onboarding",
    }
    assert result == AccountLink(
        url="https://connect.stripe.com/setup/e/acct_1Coach/abc", expires_at=CREATED + 300
    )


async def test_create_account_link_without_key_reuses_one_key_across_retries() -> None:
    # Without a key of ours the SDK would make up a new one per attempt.
    async with stripe_api() as (gw, api):
        route = api.post("/v1/account_links")
        route.side_effect = [httpx.Response(500, json={}), httpx.Response(200, json=account_link())]
        await gw.create_account_link(
            account_id="acct_1Coach", refresh_url="https://r.test", return_url="https://x.test"
        )
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert route.call_count == 2
    assert len(keys) == 1
    assert keys.pop().startswith("coachpay:account-link:")


async def test_create_login_link() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/accounts/acct_1Coach/login_links").respond(200, json=login_link())
        result = await gw.create_login_link("acct_1Coach")
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.content == b""
    assert request.headers["Idempotency-Key"].startswith("coachpay:login-link:")
    assert result == LoginLink(url="https://connect.stripe.com/express/acct_1Coach/xyz")


async def test_create_login_link_with_key() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/accounts/acct_1Coach/login_links").respond(200, json=login_link())
        await gw.create_login_link("acct_1Coach", idempotency_key="coachpay:login:42:1")
    assert route.calls.last.request.headers["Idempotency-Key"] == "coachpay:login:42:1"
