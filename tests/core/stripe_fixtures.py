"""Stripe-shaped response bodies and helpers for respx gateway tests.

The bodies follow Stripe's documented objects (trimmed to the fields a real
response always carries plus those we read), so the SDK parses them exactly
as it would parse a live response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx

from core.stripe_gateway import StripeGateway

API = "https://api.stripe.com"
API_KEY = "sk_test_gateway"
CREATED = 1_700_000_000


@asynccontextmanager
async def stripe_api(
    max_retries: int = 3, **kwargs: Any
) -> AsyncIterator[tuple[StripeGateway, respx.MockRouter]]:
    """A gateway with zero backoff, and a respx router in front of api.stripe.com."""
    with respx.mock(base_url=API, assert_all_called=False) as router:
        gateway = StripeGateway(API_KEY, max_retries=max_retries, backoff_base=0, **kwargs)
        try:
            yield gateway, router
        finally:
            await gateway.aclose()


def form(request: httpx.Request) -> dict[str, str]:
    """The decoded form body; fails if a field is sent twice."""
    parsed = parse_qs(request.content.decode(), keep_blank_values=True, strict_parsing=False)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def query(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params.multi_items())


def assert_write(request: httpx.Request, method: str, path: str, key: str) -> dict[str, str]:
    assert request.method == method
    assert request.url.path == path
    assert request.headers["Idempotency-Key"] == key
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return form(request)


def assert_read(request: httpx.Request, path: str) -> dict[str, str]:
    assert request.method == "GET"
    assert request.url.path == path
    assert "Idempotency-Key" not in request.headers
    return query(request)


def error_body(type_: str, message: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "code": code, **extra}}


# -- objects ---------------------------------------------------------------


def account(account_id: str = "acct_1Coach", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": account_id,
        "object": "account",
        "business_type": None,
        "capabilities": {"transfers": "pending"},
        "charges_enabled": False,
        "controller": {
            "fees": {"payer": "application"},
            "is_controller": True,
            "losses": {"payments": "application"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express"},
            "type": "application",
        },
        "country": "US",
        "created": CREATED,
        "default_currency": "usd",
        "details_submitted": False,
        "email": "coach@example.com",
        "metadata": {"coach_id": "42"},
        "payouts_enabled": False,
        "requirements": {
            "alternatives": [],
            "current_deadline": None,
            "currently_due": ["external_account", "tos_acceptance.date"],
            "disabled_reason": "requirements.past_due",
            "errors": [],
            "eventually_due": ["external_account", "individual.ssn_last_4"],
            "past_due": ["external_account"],
            "pending_verification": [],
        },
        "type": "none",
    }
    return {**body, **over}


def account_link() -> dict[str, Any]:
    return {
        "object": "account_link",
        "created": CREATED,
        "expires_at": CREATED + 300,
        "url": "https://connect.stripe.com/setup/e/acct_1Coach/abc",
    }


def login_link() -> dict[str, Any]:
    return {
        "object": "login_link",
        "created": CREATED,
        "url": "https://connect.stripe.com/express/acct_1Coach/xyz",
    }


def checkout_session(session_id: str = "cs_test_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": 5000,
        "amount_total": 5000,
        "cancel_url": "https://coachpay.test/cancel",
        "client_reference_id": "booking-7",
        "created": CREATED,
        "currency": "usd",
        "customer_email": "mentee@example.com",
        "expires_at": CREATED + 1800,
        "livemode": False,
        "metadata": {"booking_id": "7"},
        "mode": "payment",
        "payment_intent": None,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": "https://coachpay.test/ok",
        "url": "https://checkout.stripe.com/c/pay/cs_test_1",
    }
    return {**body, **over}


def balance_transaction(txn_id: str = "txn_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": 5000,
        "available_on": CREATED + 2 * 86400,
        "created": CREATED,
        "currency": "usd",
        "description": None,
        "exchange_rate": None,
        "fee": 175,
        "fee_details": [
            {
                "amount": 175,
                "currency": "usd",
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ],
        "net": 4825,
        "reporting_category": "charge",
        "source": "ch_1",
        "status": "pending",
        "type": "charge",
    }
    return {**body, **over}


def charge(charge_id: str = "ch_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": charge_id,
        "object": "charge",
        "amount": 5000,
        "amount_captured": 5000,
        "amount_refunded": 0,
        "balance_transaction": balance_transaction(),
        "captured": True,
        "created": CREATED,
        "currency": "usd",
        "disputed": False,
        "metadata": {"booking_id": "7"},
        "paid": True,
        "payment_intent": "pi_1",
        "refunded": False,
        "status": "succeeded",
        "transfer_group": "booking-7",
    }
    return {**body, **over}


def payment_intent(pi_id: str = "pi_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 5000,
        "amount_received": 5000,
        "created": CREATED,
        "currency": "usd",
        "last_payment_error": None,
        "latest_charge": charge(),
        "livemode": False,
        "metadata": {"booking_id": "7"},
        "status": "succeeded",
        "transfer_group": "booking-7",
    }
    return {**body, **over}


def refund(refund_id: str = "re_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": refund_id,
        "object": "refund",
        "amount": 2000,
        "balance_transaction": "txn_re_1",
        "charge": "ch_1",
        "created": CREATED,
        "currency": "usd",
        "metadata": {"refund_id": "9"},
        "payment_intent": "pi_1",
        "reason": "requested_by_customer",
        "status": "succeeded",
    }
    return {**body, **over}


def transfer(transfer_id: str = "tr_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": transfer_id,
        "object": "transfer",
        "amount": 4000,
        "amount_reversed": 0,
        "balance_transaction": "txn_tr_1",
        "created": CREATED,
        "currency": "usd",
        "description": None,
        "destination": "acct_1Coach",
        "destination_payment": "py_1",
        "livemode": False,
        "metadata": {"payout_id": "11"},
        "reversals": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/transfers/{transfer_id}/reversals",
        },
        "reversed": False,
        "source_transaction": "ch_1",
        "source_type": "card",
        "transfer_group": "booking-7",
    }
    return {**body, **over}


def transfer_reversal(reversal_id: str = "trr_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": reversal_id,
        "object": "transfer_reversal",
        "amount": 1000,
        "balance_transaction": "txn_trr_1",
        "created": CREATED,
        "currency": "usd",
        "destination_payment_refund": "pyr_1",
        "metadata": {"reversal_id": "3"},
        "source_refund": None,
        "transfer": "tr_1",
    }
    return {**body, **over}


def balance() -> dict[str, Any]:
    return {
        "object": "balance",
        "available": [
            {"amount": 10000, "currency": "usd", "source_types": {"card": 10000}},
            {"amount": 300, "currency": "eur", "source_types": {"card": 300}},
        ],
        "livemode": False,
        "pending": [{"amount": 4825, "currency": "usd", "source_types": {"card": 4825}}],
    }


def event(event_id: str = "evt_1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": CREATED,
        "data": {
            "object": checkout_session(
                status="complete", payment_status="paid", payment_intent="pi_1"
            ),
            "previous_attributes": None,
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }
    return {**body, **over}


def listing(url: str, data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
