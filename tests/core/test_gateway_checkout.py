"""Checkout Sessions: create, retrieve, expire."""

from __future__ import annotations

from core.stripe_types import CheckoutSession
from tests.core.stripe_fixtures import (
    CREATED,
    assert_read,
    assert_write,
    checkout_session,
    stripe_api,
)


async def test_create_checkout_session_sends_line_item_and_transfer_group() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/checkout/sessions").respond(200, json=checkout_session())
        result = await gw.create_checkout_session(
            amount=5000,
            currency="usd",
            product_name="Mentoring session with Ada",
            success_url="https://coachpay.test/ok",
            cancel_url="https://coachpay.test/cancel",
            expires_at=CREATED + 1800,
            metadata={"booking_id": "7"},
            transfer_group="booking-7",
            customer_email="mentee@example.com",
            client_reference_id="booking-7",
            idempotency_key="coachpay:checkout:7:1",
        )
    request = route.calls.last.request
    fields = assert_write(request, "POST", "/v1/checkout/sessions", "coachpay:checkout:7:1")
    assert fields == {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "5000",
        "line_items[0][price_data][product_data][name]": "Mentoring session with Ada",
        "payment_intent_data[transfer_group]": "booking-7",
        "payment_intent_data[metadata][booking_id]": "7",
        "metadata[booking_id]": "7",
        "success_url": "https://coachpay.test/ok",
        "cancel_url": "https://coachpay.test/cancel",
        "expires_at": str(CREATED + 1800),
        "customer_email": "mentee@example.com",
        "client_reference_id": "booking-7",
    }
    assert result == CheckoutSession(
        id="cs_test_1",
        url="https://checkout.stripe.com/c/pay/cs_test_1",
        status="open",
        payment_status="unpaid",
        payment_intent_id=None,
        amount_total=5000,
        currency="usd",
        expires_at=CREATED + 1800,
        metadata={"booking_id": "7"},
        client_reference_id="booking-7",
    )


async def test_create_checkout_session_omits_optional_fields() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/checkout/sessions").respond(200, json=checkout_session())
        await gw.create_checkout_session(
            amount=5000,
            currency="usd",
            product_name="Session",
            success_url="https://ok.test",
            cancel_url="https://cancel.test",
            expires_at=CREATED + 1800,
            metadata={},
            transfer_group="booking-8",
            idempotency_key="coachpay:checkout:8:1",
        )
    fields = assert_write(
        route.calls.last.request, "POST", "/v1/checkout/sessions", "coachpay:checkout:8:1"
    )
    assert "customer_email" not in fields
    assert "client_reference_id" not in fields


async def test_retrieve_completed_checkout_session() -> None:
    body = checkout_session(status="complete", payment_status="paid", payment_intent="pi_1")
    async with stripe_api() as (gw, api):
        route = api.get("/v1/checkout/sessions/cs_test_1").respond(200, json=body)
        result = await gw.retrieve_checkout_session("cs_test_1")
    assert assert_read(route.calls.last.request, "/v1/checkout/sessions/cs_test_1") == {}
    assert result.status == "complete"
    assert result.payment_status == "paid"
    assert result.payment_intent_id == "pi_1"


async def test_retrieve_checkout_session_with_expanded_payment_intent() -> None:
    body = checkout_session(payment_intent={"id": "pi_2", "object": "payment_intent"})
    async with stripe_api() as (gw, api):
        api.get("/v1/checkout/sessions/cs_test_1").respond(200, json=body)
        result = await gw.retrieve_checkout_session("cs_test_1")
    assert result.payment_intent_id == "pi_2"


async def test_expire_checkout_session() -> None:
    body = checkout_session(status="expired", url=None)
    async with stripe_api() as (gw, api):
        route = api.post("/v1/checkout/sessions/cs_test_1/expire").respond(200, json=body)
        result = await gw.expire_checkout_session("cs_test_1", idempotency_key="coachpay:exp:7")
    request = route.calls.last.request
    assert (
        assert_write(request, "POST", "/v1/checkout/sessions/cs_test_1/expire", "coachpay:exp:7")
        == {}
    )
    assert result.status == "expired"
    assert result.url is None
