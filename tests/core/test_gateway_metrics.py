"""Every Stripe call is counted in the gateway's one choke point: by method and
outcome, with its duration and its retries."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from core.metrics import gateway_method
from core.stripe_errors import StripeOutcomeUnknown, StripeRefused
from tests.core.stripe_fixtures import error_body, stripe_api, transfer


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_call_is_counted_with_its_method_outcome_and_retries() -> None:
    ok = {"method": "create_transfer", "outcome": "ok"}
    before = _value("coachpay_stripe_requests_total", **ok)
    retries = _value("coachpay_stripe_retries_total", method="create_transfer")
    timed = _value("coachpay_stripe_request_duration_seconds_count", method="create_transfer")
    async with stripe_api(max_retries=2) as (gw, router):
        router.post("/v1/transfers").mock(
            side_effect=[
                httpx.Response(500, json=error_body("api_error", "boom")),
                httpx.Response(200, json=transfer()),
            ]
        )
        await gw.create_transfer(
            amount=100, currency="usd", destination="acct_1", metadata={}, idempotency_key="k:1"
        )
    assert _value("coachpay_stripe_requests_total", **ok) == before + 1
    assert _value("coachpay_stripe_retries_total", method="create_transfer") == retries + 1
    count = _value("coachpay_stripe_request_duration_seconds_count", method="create_transfer")
    assert count == timed + 1


@pytest.mark.parametrize(("status", "error"), [(402, StripeRefused), (503, StripeOutcomeUnknown)])
async def test_a_failed_call_is_counted_under_its_error(status: int, error: type) -> None:
    labels = {"method": "retrieve_balance", "outcome": error.__name__}
    before = _value("coachpay_stripe_requests_total", **labels)
    async with stripe_api(max_retries=0) as (gw, router):
        body = error_body("card_error" if status == 402 else "api_error", "no")
        router.get("/v1/balance").mock(return_value=httpx.Response(status, json=body))
        with pytest.raises(error):
            await gw.retrieve_balance()
    assert _value("coachpay_stripe_requests_total", **labels) == before + 1


def test_the_method_label_is_the_gateway_method_of_the_lambda() -> None:
    class StripeGateway:
        def create_refund(self) -> object:
            return lambda: None

    assert gateway_method(StripeGateway().create_refund()) == "create_refund"
