"""Connect accounts: creation, update, links, onboarding control and account.updated events."""

from __future__ import annotations

import httpx
import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import CONNECT_SECRET, Receiver, create_coach


def test_new_express_account_cannot_be_paid_yet(client: stripe.StripeClient) -> None:
    account = create_coach(client)
    data = account.to_dict()
    assert data["id"].startswith("acct_")
    assert data["object"] == "account"
    assert data["type"] == "express"
    assert data["controller"]["stripe_dashboard"]["type"] == "express"
    assert data["controller"]["fees"]["payer"] == "application"
    assert data["controller"]["losses"]["payments"] == "application"
    assert data["charges_enabled"] is False
    assert data["payouts_enabled"] is False
    assert data["details_submitted"] is False
    assert data["capabilities"] == {"transfers": "inactive"}
    assert data["requirements"]["currently_due"]
    assert data["metadata"] == {"coach_id": "42"}
    assert data["email"] == "coach@example.com"


def test_retrieve_update_and_list(client: stripe.StripeClient) -> None:
    account = create_coach(client)
    updated = client.v1.accounts.update(
        account.id, {"metadata": {"coach_id": "", "tier": "gold"}, "email": "new@example.com"}
    )
    assert updated.metadata.to_dict() == {"tier": "gold"}
    assert client.v1.accounts.retrieve(account.id).email == "new@example.com"
    other = create_coach(client)
    listed = client.v1.accounts.list({"limit": 1})
    assert [a.id for a in listed.data] == [other.id]
    assert listed.has_more is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.accounts.retrieve("acct_nope")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"


def test_unknown_parameter_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.accounts.create({"type": "express", "colour": "red"})  # type: ignore[typeddict-unknown-key]
    assert refused.value.code == "parameter_unknown"


def test_account_link_page_completes_onboarding(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    account = create_coach(client)
    link = client.v1.account_links.create(
        {
            "account": account.id,
            "refresh_url": "https://coachpay.test/refresh",
            "return_url": "https://coachpay.test/return",
            "type": "account_onboarding",
        }
    )
    assert link.object == "account_link"
    assert link.url.startswith(emulator.base_url)
    refresh = httpx.get(link.url + "&action=refresh")
    assert refresh.headers["location"] == "https://coachpay.test/refresh"
    assert client.v1.accounts.retrieve(account.id).details_submitted is False
    visit = httpx.get(link.url)
    assert visit.status_code == 302
    assert visit.headers["location"] == "https://coachpay.test/return"
    done = client.v1.accounts.retrieve(account.id)
    assert done.details_submitted and done.charges_enabled and done.payouts_enabled
    assert done.capabilities.to_dict() == {"transfers": "active"}
    assert done.requirements.currently_due == []

    emulator.flush_webhooks()
    updates = receiver.of_type("account.updated")
    assert len(updates) == 1
    assert updates[0].path == "/connect"
    event = stripe.Webhook.construct_event(updates[0].payload, updates[0].signature, CONNECT_SECRET)
    assert event.account == account.id
    assert event.data.object.charges_enabled is True
    assert event.data.previous_attributes["charges_enabled"] is False


def test_restrict_and_disable(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    account = create_coach(client)
    emulator.control("POST", f"accounts/{account.id}/complete_onboarding")
    emulator.control(
        "POST",
        f"accounts/{account.id}/restrict",
        {"disabled_reason": "requirements.past_due", "currently_due": ["external_account"]},
    )
    restricted = client.v1.accounts.retrieve(account.id)
    assert restricted.payouts_enabled is False
    assert restricted.requirements.disabled_reason == "requirements.past_due"
    assert restricted.requirements.currently_due == ["external_account"]
    assert restricted.requirements.past_due == ["external_account"]
    assert restricted.capabilities.transfers == "inactive"

    emulator.control(
        "POST", f"accounts/{account.id}/disable", {"disabled_reason": "rejected.fraud"}
    )
    disabled = client.v1.accounts.retrieve(account.id)
    assert disabled.requirements.disabled_reason == "rejected.fraud"
    assert disabled.charges_enabled is False
    emulator.flush_webhooks()
    assert receiver.types("/connect") == ["account.updated"] * 3


def test_login_link(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    account = create_coach(client)
    link = client.v1.accounts.login_links.create(account.id)
    assert link.object == "login_link"
    assert link.url.startswith(f"{emulator.base_url}/_emulator/dashboard/")
    assert httpx.get(link.url).status_code == 200


def test_missing_or_bad_key_is_401(emulator: EmulatorServer) -> None:
    none = httpx.get(f"{emulator.base_url}/v1/balance")
    assert none.status_code == 401
    assert none.json()["error"]["type"] == "invalid_request_error"
    bad = httpx.get(f"{emulator.base_url}/v1/balance", headers={"Authorization": "Bearer pk_x"})
    assert bad.status_code == 401
    unknown = httpx.get(
        f"{emulator.base_url}/v1/nothing", headers={"Authorization": "Bearer sk_test"}
    )
    assert unknown.status_code == 404
    assert "Unrecognized request URL" in unknown.json()["error"]["message"]
