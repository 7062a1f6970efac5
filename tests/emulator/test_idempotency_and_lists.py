"""Idempotency keys as Stripe honours them, and list pagination over many transfers."""

from __future__ import annotations

import httpx
import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import fund_platform, onboarded_coach


def test_same_key_same_params_replays(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 1_000)
    params = {"amount": 500, "currency": "usd", "destination": coach, "metadata": {"p": "1"}}
    first = client.v1.transfers.create(params, {"idempotency_key": "payout:1"})  # type: ignore[arg-type]
    second = client.v1.transfers.create(params, {"idempotency_key": "payout:1"})  # type: ignore[arg-type]
    assert first.id == second.id
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(emulator.state.transfers) == 1
    assert emulator.control("GET", "stats")["idempotent_replays"] == 1


def test_same_key_other_params_is_an_idempotency_error(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 1_000)
    client.v1.transfers.create(
        {"amount": 500, "currency": "usd", "destination": coach}, {"idempotency_key": "k"}
    )
    with pytest.raises(stripe.IdempotencyError) as conflict:
        client.v1.transfers.create(
            {"amount": 501, "currency": "usd", "destination": coach}, {"idempotency_key": "k"}
        )
    assert conflict.value.http_status == 400
    assert conflict.value.error.type == "idempotency_error"
    # Keys are per API key: another key may reuse the same idempotency key.
    other = stripe.StripeClient(
        "sk_test_other",
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        base_addresses={"api": emulator.base_url},
        max_network_retries=0,
    )
    other.v1.transfers.create(
        {"amount": 501, "currency": "usd", "destination": coach}, {"idempotency_key": "k"}
    )


def test_refusal_is_replayed_but_validation_error_is_not(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    coach = onboarded_coach(client, emulator)
    params = {"amount": 500, "currency": "usd", "destination": coach}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create(params, {"idempotency_key": "short"})  # type: ignore[arg-type]
    fund_platform(client, emulator, 1_000)
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        client.v1.transfers.create(params, {"idempotency_key": "short"})  # type: ignore[arg-type]
    assert replayed.value.code == "balance_insufficient"
    assert replayed.value.headers["Idempotent-Replayed"] == "true"
    # A validation error is not stored under the key (Stripe had not started executing)...
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create(
            {"currency": "usd", "destination": coach}, {"idempotency_key": "v"}
        )
    # ...so the same request with the same key is validated again, not replayed.
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.transfers.create(
            {"currency": "usd", "destination": coach}, {"idempotency_key": "v"}
        )
    assert "Idempotent-Replayed" not in (again.value.headers or {})


def test_keys_are_ignored_on_get(emulator: EmulatorServer) -> None:
    headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": "g"}
    first = httpx.get(f"{emulator.base_url}/v1/balance", headers=headers)
    second = httpx.get(f"{emulator.base_url}/v1/balance", headers=headers)
    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers


def test_transfer_pagination(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    coach = onboarded_coach(client, emulator)
    other = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 10_000)
    created = []
    for i in range(25):
        destination = coach if i % 5 else other
        transfer = client.v1.transfers.create(
            {
                "amount": 100 + i,
                "currency": "usd",
                "destination": destination,
                "transfer_group": f"g{i % 2}",
            }
        )
        created.append(transfer.id)
    seen: list[str] = []
    params: dict[str, object] = {"limit": 10}
    while True:
        page = client.v1.transfers.list(params)  # type: ignore[arg-type]
        seen += [t.id for t in page.data]
        if not page.has_more:
            break
        params = {"limit": 10, "starting_after": page.data[-1].id}
    assert seen == list(reversed(created))
    group = client.v1.transfers.list({"transfer_group": "g0", "limit": 100}).data
    assert [t.id for t in group] == list(reversed(created[0::2]))
    both = client.v1.transfers.list({"transfer_group": "g0", "destination": other, "limit": 100})
    assert [t.id for t in both.data] == [created[20], created[10], created[0]]
    auto = [t.id for t in client.v1.transfers.list({"limit": 7}).auto_paging_iter()]
    assert auto == list(reversed(created))
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.list({"limit": 101})
