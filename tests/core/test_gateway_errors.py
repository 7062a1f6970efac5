"""Which Stripe answer becomes which domain error, and the retry policy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
import stripe

from core.errors import DomainError
from core.settings import Settings
from core.stripe_errors import (
    StripeAuthenticationError,
    StripeBalanceInsufficient,
    StripeIdempotencyError,
    StripeNotFound,
    StripeOutcomeUnknown,
    StripeRefused,
    classify,
    is_retryable,
)
from core.stripe_gateway import StripeGateway, idempotency_key
from core.stripe_retry import RetryPolicy
from tests.core.stripe_fixtures import error_body, stripe_api, transfer


async def _transfer(gw: StripeGateway) -> Any:
    return await gw.create_transfer(
        amount=4000,
        currency="usd",
        destination="acct_1Coach",
        metadata={},
        idempotency_key="coachpay:transfer:11",
    )


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            402,
            error_body(
                "card_error",
                "Your card was declined.",
                "card_declined",
                decline_code="insufficient_funds",
            ),
            StripeRefused,
        ),
        (
            400,
            error_body(
                "invalid_request_error",
                "You have insufficient available funds in your Stripe account.",
                "balance_insufficient",
            ),
            StripeBalanceInsufficient,
        ),
        (
            404,
            error_body(
                "invalid_request_error",
                "No such destination: 'acct_x'",
                "resource_missing",
                param="destination",
            ),
            StripeNotFound,
        ),
        (
            400,
            error_body(
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with.",
            ),
            StripeIdempotencyError,
        ),
        (
            401,
            error_body("invalid_request_error", "Invalid API Key provided: sk_test_***"),
            StripeAuthenticationError,
        ),
        (
            403,
            error_body(
                "invalid_request_error",
                "The provided key does not have access.",
                "secret_key_required",
            ),
            StripeRefused,
        ),
        (
            400,
            error_body(
                "invalid_request_error",
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                "insufficient_capabilities_for_transfer",
            ),
            StripeRefused,
        ),
    ],
    ids=["card", "balance", "missing", "idempotency", "auth", "permission", "no-capability"],
)
async def test_refusals_are_named_and_never_retried(
    status: int, body: dict[str, Any], error: type[StripeRefused]
) -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers").respond(status, json=body)
        with pytest.raises(error) as info:
            await _transfer(gw)
    assert route.call_count == 1
    assert type(info.value) is error
    assert isinstance(info.value, DomainError)
    assert info.value.http_status == status
    assert info.value.code == body["error"]["code"]
    assert info.value.message == body["error"]["message"]
    assert info.value.decline_code == body["error"].get("decline_code")


async def test_card_error_keeps_decline_code() -> None:
    body = error_body("card_error", "Declined.", "card_declined", decline_code="lost_card")
    async with stripe_api() as (gw, api):
        api.post("/v1/transfers").respond(402, json=body)
        with pytest.raises(StripeRefused) as info:
            await _transfer(gw)
    assert info.value.decline_code == "lost_card"


async def test_409_concurrent_request_is_unknown_and_not_retried() -> None:
    body = error_body(
        "invalid_request_error", "There is currently another in-progress request using this key."
    )
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers").respond(409, json=body)
        with pytest.raises(StripeOutcomeUnknown) as info:
            await _transfer(gw)
    assert route.call_count == 1
    assert info.value.http_status == 409


async def test_429_every_time_is_outcome_unknown() -> None:
    body = error_body("invalid_request_error", "Too many requests", "rate_limit")
    async with stripe_api(max_retries=3) as (gw, api):
        route = api.post("/v1/transfers").respond(429, json=body)
        with pytest.raises(StripeOutcomeUnknown) as info:
            await _transfer(gw)
    assert route.call_count == 4
    assert info.value.http_status == 429


async def test_5xx_with_html_body_is_retried_then_unknown() -> None:
    async with stripe_api(max_retries=1) as (gw, api):
        route = api.post("/v1/transfers").respond(502, text="<html>Bad gateway</html>")
        with pytest.raises(StripeOutcomeUnknown):
            await _transfer(gw)
    assert route.call_count == 2


async def test_unparseable_success_body_is_unknown_not_refused() -> None:
    # The transfer may exist: treating this as a refusal could pay twice.
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers").respond(200, text="{not json")
        with pytest.raises(StripeOutcomeUnknown):
            await _transfer(gw)
    assert route.call_count == 1


async def test_max_retries_zero_makes_one_attempt() -> None:
    async with stripe_api(max_retries=0) as (gw, api):
        route = api.post("/v1/transfers")
        route.side_effect = httpx.ConnectTimeout("connect timed out")
        with pytest.raises(StripeOutcomeUnknown):
            await _transfer(gw)
    assert route.call_count == 1


async def test_timeout_setting_reaches_every_request() -> None:
    async with stripe_api(timeout=2.5) as (gw, api):
        route = api.post("/v1/transfers").respond(200, json=transfer())
        await _transfer(gw)
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


async def test_backoff_is_jittered_exponential_and_bounded() -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def always_down() -> None:
        raise stripe.APIConnectionError("down")

    policy = RetryPolicy(max_retries=5, backoff_base=0.5, max_backoff=3.0, sleep=fake_sleep)
    for _ in range(20):
        with pytest.raises(StripeOutcomeUnknown):
            await policy.call(always_down)
    assert len(sleeps) == 20 * 5
    for n in range(5):
        nth = sleeps[n::5]
        # Full jitter: uniform over [0, min(0.5 * 2**n, 3)].
        assert all(0 <= s <= min(0.5 * 2**n, 3.0) for s in nth)
    assert len(set(sleeps)) > 50  # jittered, not a fixed schedule


async def test_backoff_honours_retry_after_within_bound() -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    calls = 0

    async def limited_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise stripe.RateLimitError("slow down", http_status=429, headers={"Retry-After": "2"})
        return "ok"

    policy = RetryPolicy(max_retries=3, backoff_base=0.1, max_backoff=5.0, sleep=fake_sleep)
    assert await policy.call(limited_once) == "ok"
    assert sleeps == [2.0]


def test_classify_and_is_retryable() -> None:
    conn = stripe.APIConnectionError("boom")
    assert is_retryable(conn) and isinstance(classify(conn), StripeOutcomeUnknown)
    api_500 = stripe.APIError("oops", http_status=500)
    assert is_retryable(api_500) and isinstance(classify(api_500), StripeOutcomeUnknown)
    invalid = stripe.InvalidRequestError("bad", "amount", code="parameter_missing", http_status=400)
    assert not is_retryable(invalid) and type(classify(invalid)) is StripeRefused
    assert not is_retryable(ValueError("x"))
    assert isinstance(classify(httpx.ReadTimeout("t")), StripeOutcomeUnknown)
    already = StripeNotFound("resource_missing", "gone", 404)
    assert classify(already) is already


def test_idempotency_key_is_derived_from_the_row() -> None:
    assert idempotency_key("transfer", 11) == "coachpay:transfer:11"
    assert idempotency_key("refund", "9", "attempt", 2) == "coachpay:refund:9:attempt:2"
    with pytest.raises(ValueError):
        idempotency_key("x", "y" * 300)


async def test_write_without_key_is_rejected_before_any_request() -> None:
    async with stripe_api() as (gw, api):
        with pytest.raises(ValueError):
            await gw.create_transfer(
                amount=1, currency="usd", destination="acct_1", metadata={}, idempotency_key=""
            )
    assert not api.calls


def _settings(**values: Any) -> Settings:
    # Explicit values win over any COACHPAY_* variables in the environment.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_from_settings_uses_emulator_key_and_base() -> None:
    settings = _settings(stripe_secret_key=None, stripe_api_base="http://127.0.0.1:9999")
    gw = StripeGateway.from_settings(settings, backoff_base=0)
    try:
        with respx.mock(base_url="http://127.0.0.1:9999") as api:
            route = api.get("/v1/balance").respond(
                200, json={"object": "balance", "available": [], "pending": []}
            )
            await gw.retrieve_balance()
    finally:
        await gw.aclose()
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk_test_emulator"


async def test_from_settings_uses_secret_key_and_default_emulator_port() -> None:
    settings = _settings(stripe_secret_key=None, stripe_api_base=None, emulator_port=12555)
    gw = StripeGateway.from_settings(settings)
    try:
        with respx.mock(base_url="http://127.0.0.1:12555") as api:
            route = api.get("/v1/balance").respond(200, json={"object": "balance"})
            await gw.retrieve_balance()
    finally:
        await gw.aclose()
    assert route.called

    live = _settings(stripe_secret_key="sk_test_real", stripe_api_base=None)
    gw = StripeGateway.from_settings(live)
    try:
        with respx.mock(base_url="https://api.stripe.com") as api:
            route = api.get("/v1/balance").respond(200, json={"object": "balance"})
            await gw.retrieve_balance()
    finally:
        await gw.aclose()
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk_test_real"
