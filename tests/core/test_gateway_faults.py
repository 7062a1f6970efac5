"""Retries and error mapping, for every gateway call.

Transient faults (connection errors, timeouts, 429, 5xx) are retried
``max_retries`` times and then reported as StripeOutcomeUnknown; a refusal is
reported at once, without a retry. Writes resend the SAME idempotency key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.stripe_errors import StripeOutcomeUnknown, StripeRefused
from core.stripe_gateway import StripeGateway
from tests.core import stripe_fixtures as fx
from tests.core.stripe_fixtures import error_body, stripe_api


async def _drain(gw: StripeGateway) -> list[Any]:
    return [t async for t in gw.iter_balance_transactions()]


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    body: dict[str, Any]
    invoke: Callable[[StripeGateway], Awaitable[Any]]

    @property
    def is_write(self) -> bool:
        return self.method == "POST"


KEY = "coachpay:test:1"
CALLS = [
    Call(
        "create_account",
        "POST",
        "/v1/accounts",
        fx.account(),
        lambda gw: gw.create_account(
            email="c@x.test", country="US", metadata={}, idempotency_key=KEY
        ),
    ),
    Call(
        "retrieve_account",
        "GET",
        "/v1/accounts/acct_1Coach",
        fx.account(),
        lambda gw: gw.retrieve_account("acct_1Coach"),
    ),
    Call(
        "update_account",
        "POST",
        "/v1/accounts/acct_1Coach",
        fx.account(),
        lambda gw: gw.update_account("acct_1Coach", metadata={"a": "b"}, idempotency_key=KEY),
    ),
    Call(
        "create_account_link",
        "POST",
        "/v1/account_links",
        fx.account_link(),
        lambda gw: gw.create_account_link(
            account_id="acct_1Coach",
            refresh_url="https://r.test",
            return_url="https://x.test",
            idempotency_key=KEY,
        ),
    ),
    Call(
        "create_login_link",
        "POST",
        "/v1/accounts/acct_1Coach/login_links",
        fx.login_link(),
        lambda gw: gw.create_login_link("acct_1Coach", idempotency_key=KEY),
    ),
    Call(
        "create_checkout_session",
        "POST",
        "/v1/checkout/sessions",
        fx.checkout_session(),
        lambda gw: gw.create_checkout_session(
            amount=5000,
            currency="usd",
            product_name="S",
            success_url="https://ok.test",
            cancel_url="https://no.test",
            expires_at=fx.CREATED + 1800,
            metadata={},
            transfer_group="booking-7",
            idempotency_key=KEY,
        ),
    ),
    Call(
        "retrieve_checkout_session",
        "GET",
        "/v1/checkout/sessions/cs_test_1",
        fx.checkout_session(),
        lambda gw: gw.retrieve_checkout_session("cs_test_1"),
    ),
    Call(
        "expire_checkout_session",
        "POST",
        "/v1/checkout/sessions/cs_test_1/expire",
        fx.checkout_session(status="expired"),
        lambda gw: gw.expire_checkout_session("cs_test_1", idempotency_key=KEY),
    ),
    Call(
        "retrieve_payment_intent",
        "GET",
        "/v1/payment_intents/pi_1",
        fx.payment_intent(),
        lambda gw: gw.retrieve_payment_intent("pi_1"),
    ),
    Call(
        "retrieve_charge",
        "GET",
        "/v1/charges/ch_1",
        fx.charge(),
        lambda gw: gw.retrieve_charge("ch_1"),
    ),
    Call(
        "create_refund",
        "POST",
        "/v1/refunds",
        fx.refund(),
        lambda gw: gw.create_refund(
            payment_intent="pi_1", amount=100, metadata={}, idempotency_key=KEY
        ),
    ),
    Call(
        "create_transfer",
        "POST",
        "/v1/transfers",
        fx.transfer(),
        lambda gw: gw.create_transfer(
            amount=4000, currency="usd", destination="acct_1Coach", metadata={}, idempotency_key=KEY
        ),
    ),
    Call(
        "retrieve_transfer",
        "GET",
        "/v1/transfers/tr_1",
        fx.transfer(),
        lambda gw: gw.retrieve_transfer("tr_1"),
    ),
    Call(
        "list_transfers",
        "GET",
        "/v1/transfers",
        fx.listing("/v1/transfers", []),
        lambda gw: gw.list_transfers(transfer_group="booking-7"),
    ),
    Call(
        "find_transfer_by_metadata",
        "GET",
        "/v1/transfers",
        fx.listing("/v1/transfers", []),
        lambda gw: gw.find_transfer_by_metadata(
            destination="acct_1Coach", transfer_group=None, key="k", value="v"
        ),
    ),
    Call(
        "create_transfer_reversal",
        "POST",
        "/v1/transfers/tr_1/reversals",
        fx.transfer_reversal(),
        lambda gw: gw.create_transfer_reversal("tr_1", metadata={}, idempotency_key=KEY),
    ),
    Call("retrieve_balance", "GET", "/v1/balance", fx.balance(), lambda gw: gw.retrieve_balance()),
    Call(
        "list_balance_transactions",
        "GET",
        "/v1/balance_transactions",
        fx.listing("/v1/balance_transactions", []),
        lambda gw: gw.list_balance_transactions(),
    ),
    Call(
        "iter_balance_transactions",
        "GET",
        "/v1/balance_transactions",
        fx.listing("/v1/balance_transactions", []),
        _drain,
    ),
    Call(
        "retrieve_event",
        "GET",
        "/v1/events/evt_1",
        fx.event(),
        lambda gw: gw.retrieve_event("evt_1"),
    ),
]
every_call = pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])


def _ok(call: Call) -> httpx.Response:
    return httpx.Response(200, json=call.body)


def _server_error(status: int = 500) -> httpx.Response:
    return httpx.Response(status, json=error_body("api_error", "Something went wrong."))


def _assert_one_key(route: Any, call: Call) -> None:
    keys = {c.request.headers.get("Idempotency-Key") for c in route.calls}
    assert keys == ({KEY} if call.is_write else {None})


@every_call
async def test_429_then_success_retries_once(call: Call) -> None:
    rate_limited = httpx.Response(
        429, json=error_body("invalid_request_error", "Slow down", "rate_limit")
    )
    async with stripe_api() as (gw, api):
        route = api.route(method=call.method, path=call.path)
        route.side_effect = [rate_limited, _ok(call)]
        await call.invoke(gw)
    assert route.call_count == 2
    _assert_one_key(route, call)


@every_call
async def test_500_three_times_then_success(call: Call) -> None:
    async with stripe_api(max_retries=3) as (gw, api):
        route = api.route(method=call.method, path=call.path)
        route.side_effect = [_server_error(), _server_error(502), _server_error(503), _ok(call)]
        await call.invoke(gw)
    assert route.call_count == 4
    _assert_one_key(route, call)


@every_call
async def test_500_every_time_is_outcome_unknown(call: Call) -> None:
    async with stripe_api(max_retries=3) as (gw, api):
        route = api.route(method=call.method, path=call.path).mock(return_value=_server_error())
        with pytest.raises(StripeOutcomeUnknown) as info:
            await call.invoke(gw)
    assert route.call_count == 4  # the first attempt and three retries
    assert info.value.http_status == 500
    _assert_one_key(route, call)


@every_call
async def test_timeout_every_time_is_outcome_unknown(call: Call) -> None:
    async with stripe_api(max_retries=2) as (gw, api):
        route = api.route(method=call.method, path=call.path)
        route.side_effect = httpx.ReadTimeout("read timed out")
        with pytest.raises(StripeOutcomeUnknown) as info:
            await call.invoke(gw)
    assert route.call_count == 3
    assert info.value.http_status is None
    _assert_one_key(route, call)


@every_call
async def test_connect_error_then_success(call: Call) -> None:
    async with stripe_api() as (gw, api):
        route = api.route(method=call.method, path=call.path)
        route.side_effect = [httpx.ConnectError("refused"), _ok(call)]
        await call.invoke(gw)
    assert route.call_count == 2
    _assert_one_key(route, call)


@every_call
async def test_invalid_request_is_refused_without_retry(call: Call) -> None:
    body = error_body(
        "invalid_request_error", "Invalid amount.", "parameter_invalid_integer", param="amount"
    )
    async with stripe_api() as (gw, api):
        route = api.route(method=call.method, path=call.path).respond(400, json=body)
        with pytest.raises(StripeRefused) as info:
            await call.invoke(gw)
    assert route.call_count == 1
    assert type(info.value) is StripeRefused
    assert (info.value.code, info.value.http_status) == ("parameter_invalid_integer", 400)
    assert info.value.param == "amount"
    assert info.value.message == "Invalid amount."
