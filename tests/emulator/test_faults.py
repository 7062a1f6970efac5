"""Fault injection: each kind, seeded repeatability, the deterministic queue, rate limiting."""

from __future__ import annotations

import time

import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import fund_platform, make_client, onboarded_coach


def _transfer(client: stripe.StripeClient, coach: str, key: str) -> stripe.Transfer:
    return client.v1.transfers.create(
        {"amount": 100, "currency": "usd", "destination": coach}, {"idempotency_key": key}
    )


@pytest.fixture
def coach(client: stripe.StripeClient, emulator: EmulatorServer) -> str:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 2_000)
    return coach


def test_429_and_500_do_not_execute(
    client: stripe.StripeClient, emulator: EmulatorServer, coach: str
) -> None:
    emulator.control(
        "POST", "faults/next", {"path_prefix": "/v1/transfers", "faults": ["429", "500"]}
    )
    with pytest.raises(stripe.RateLimitError) as limited:
        _transfer(client, coach, "a")
    assert limited.value.http_status == 429
    with pytest.raises(stripe.APIError) as failed:
        _transfer(client, coach, "a")
    assert failed.value.http_status == 500
    assert emulator.state.transfers == {}
    done = _transfer(client, coach, "a")  # the same key executes now: nothing was stored
    assert done.last_response.headers.get("Idempotent-Replayed") is None
    faults = emulator.control("GET", "stats")["faults"]
    assert (faults["429"], faults["500"]) == (1, 1)


def test_drop_before_commit(
    client: stripe.StripeClient, emulator: EmulatorServer, coach: str
) -> None:
    emulator.control("POST", "faults/next", {"path_prefix": "/v1/transfers", "faults": ["drop"]})
    with pytest.raises(stripe.APIConnectionError):
        _transfer(client, coach, "b")
    assert emulator.state.transfers == {}
    # The server is fine afterwards.
    assert _transfer(client, coach, "b").id.startswith("tr_")


def test_drop_after_commit_then_retry_replays(
    client: stripe.StripeClient, emulator: EmulatorServer, coach: str
) -> None:
    emulator.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/transfers", "method": "POST", "faults": ["drop_after_commit"]},
    )
    with pytest.raises(stripe.APIConnectionError):
        _transfer(client, coach, "payout:7")
    assert len(emulator.state.transfers) == 1  # the client saw an error, yet the transfer exists
    (created,) = emulator.state.transfers
    retried = _transfer(client, coach, "payout:7")
    assert retried.id == created
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(emulator.state.transfers) == 1


def test_timeout_then_timeout_after_commit(emulator: EmulatorServer, coach: str) -> None:
    impatient = make_client(emulator, timeout=0.3)
    emulator.control("POST", "faults", {"timeout_seconds": 0.6})
    emulator.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/transfers", "faults": ["timeout", "timeout_after_commit"]},
    )
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        _transfer(impatient, coach, "c")
    assert time.monotonic() - started < 0.6
    with pytest.raises(stripe.APIConnectionError):
        _transfer(impatient, coach, "d")
    assert len(emulator.state.transfers) == 1
    assert _transfer(impatient, coach, "d").last_response.headers["Idempotent-Replayed"] == "true"


def test_latency(emulator: EmulatorServer, client: stripe.StripeClient) -> None:
    emulator.control("POST", "faults", {"latency_ms": 150, "paths": ["/v1/balance"]})
    started = time.monotonic()
    client.v1.balance.retrieve()
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    client.v1.accounts.list()
    assert time.monotonic() - started < 0.15


def _pattern(client: stripe.StripeClient, count: int = 30) -> list[str]:
    outcomes = []
    for _ in range(count):
        try:
            client.v1.balance.retrieve()
            outcomes.append("ok")
        except stripe.RateLimitError:
            outcomes.append("429")
        except stripe.APIError:
            outcomes.append("500")
    return outcomes


def test_random_faults_repeat_with_the_same_seed(
    emulator: EmulatorServer, client: stripe.StripeClient
) -> None:
    settings = {"seed": 11, "rate_429": 0.2, "rate_500": 0.3, "methods": ["GET"]}
    emulator.control("POST", "faults", settings)
    first = _pattern(client)
    emulator.control("POST", "faults", settings)
    second = _pattern(client)
    assert first == second
    assert {"ok", "429", "500"} <= set(first)
    emulator.control("POST", "faults", {**settings, "seed": 12})
    assert _pattern(client) != first


def test_control_api_is_never_faulted(emulator: EmulatorServer) -> None:
    emulator.control("POST", "faults", {"rate_500": 1.0})
    assert emulator.control("GET", "state")["counts"]["transfers"] == 0


def test_rate_limit(emulator: EmulatorServer, client: stripe.StripeClient) -> None:
    emulator.control("POST", "faults", {"max_requests_per_second": 5})
    outcomes = _pattern(client, 15)
    assert outcomes.count("ok") >= 5
    assert "429" in outcomes
    assert emulator.control("GET", "stats")["faults"]["rate_limited"] >= 1
    emulator.control("DELETE", "faults")
    assert _pattern(client, 5) == ["ok"] * 5
