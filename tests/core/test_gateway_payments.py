"""PaymentIntents and Charges (with the fee), and refunds."""

from __future__ import annotations

import pytest

from core.stripe_types import BalanceTransaction, Charge, Refund
from tests.core.stripe_fixtures import (
    CREATED,
    assert_read,
    assert_write,
    charge,
    listing,
    payment_intent,
    refund,
    stripe_api,
)

FEE_TXN = BalanceTransaction(
    id="txn_1",
    amount=5000,
    fee=175,
    net=4825,
    currency="usd",
    type="charge",
    source="ch_1",
    status="pending",
    available_on=CREATED + 2 * 86400,
    created=CREATED,
    reporting_category="charge",
)


async def test_retrieve_payment_intent_expands_charge_and_fee() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/payment_intents/pi_1").respond(200, json=payment_intent())
        result = await gw.retrieve_payment_intent("pi_1")
    params = assert_read(route.calls.last.request, "/v1/payment_intents/pi_1")
    assert params == {"expand[0]": "latest_charge.balance_transaction"}
    assert result.id == "pi_1"
    assert result.status == "succeeded"
    assert (result.amount, result.currency) == (5000, "usd")
    assert result.metadata == {"booking_id": "7"}
    assert result.last_payment_error_message is None
    assert result.latest_charge_id == "ch_1"
    assert result.latest_charge is not None
    assert result.latest_charge.balance_transaction == FEE_TXN
    assert result.latest_charge.fee == 175


async def test_retrieve_failed_payment_intent() -> None:
    body = payment_intent(
        status="requires_payment_method",
        latest_charge=None,
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "message": "Your card was declined.",
        },
    )
    async with stripe_api() as (gw, api):
        api.get("/v1/payment_intents/pi_1").respond(200, json=body)
        result = await gw.retrieve_payment_intent("pi_1")
    assert result.latest_charge is None
    assert result.latest_charge_id is None
    assert result.last_payment_error_message == "Your card was declined."


async def test_retrieve_charge_expands_balance_transaction() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/charges/ch_1").respond(200, json=charge())
        result = await gw.retrieve_charge("ch_1")
    assert assert_read(route.calls.last.request, "/v1/charges/ch_1") == {
        "expand[0]": "balance_transaction"
    }
    assert result == Charge(
        id="ch_1",
        amount=5000,
        amount_refunded=0,
        currency="usd",
        payment_intent_id="pi_1",
        balance_transaction=FEE_TXN,
        balance_transaction_id="txn_1",
        transfer_group="booking-7",
        metadata={"booking_id": "7"},
        refunded=False,
        disputed=False,
        created=CREATED,
    )


async def test_charge_with_unexpanded_balance_transaction_has_no_fee() -> None:
    async with stripe_api() as (gw, api):
        api.get("/v1/charges/ch_1").respond(200, json=charge(balance_transaction="txn_1"))
        result = await gw.retrieve_charge("ch_1")
    assert result.balance_transaction is None
    assert result.balance_transaction_id == "txn_1"
    assert result.fee is None


async def test_create_refund_by_payment_intent() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/refunds").respond(200, json=refund())
        result = await gw.create_refund(
            payment_intent="pi_1",
            amount=2000,
            metadata={"refund_id": "9"},
            reason="requested_by_customer",
            idempotency_key="coachpay:refund:9",
        )
    fields = assert_write(route.calls.last.request, "POST", "/v1/refunds", "coachpay:refund:9")
    assert fields == {
        "payment_intent": "pi_1",
        "amount": "2000",
        "metadata[refund_id]": "9",
        "reason": "requested_by_customer",
    }
    assert result == Refund(
        id="re_1",
        amount=2000,
        currency="usd",
        charge_id="ch_1",
        payment_intent_id="pi_1",
        status="succeeded",
        metadata={"refund_id": "9"},
        failure_reason=None,
    )


async def test_create_full_refund_by_charge() -> None:
    body = refund(amount=5000, status="pending")
    async with stripe_api() as (gw, api):
        route = api.post("/v1/refunds").respond(200, json=body)
        result = await gw.create_refund(
            charge="ch_1", amount=None, metadata={}, idempotency_key="coachpay:refund:10"
        )
    fields = assert_write(route.calls.last.request, "POST", "/v1/refunds", "coachpay:refund:10")
    assert fields == {"charge": "ch_1"}
    assert result.status == "pending"


async def test_create_refund_needs_exactly_one_target() -> None:
    async with stripe_api() as (gw, api):
        with pytest.raises(ValueError):
            await gw.create_refund(amount=1, metadata={}, idempotency_key="k")
        with pytest.raises(ValueError):
            await gw.create_refund(
                payment_intent="pi_1", charge="ch_1", amount=1, metadata={}, idempotency_key="k"
            )
    assert not api.calls


async def test_list_refunds_of_a_charge() -> None:
    page = listing("/v1/refunds", [refund("re_2", amount=500), refund()], has_more=True)
    async with stripe_api() as (gw, api):
        route = api.get("/v1/refunds").respond(200, json=page)
        result = await gw.list_refunds(charge="ch_1", limit=2, starting_after="re_9")
    assert assert_read(route.calls.last.request, "/v1/refunds") == {
        "charge": "ch_1",
        "limit": "2",
        "starting_after": "re_9",
    }
    assert result.has_more and result.last_id == "re_1"
    assert [(r.id, r.amount, r.charge_id, r.payment_intent_id) for r in result.data] == [
        ("re_2", 500, "ch_1", "pi_1"),
        ("re_1", 2000, "ch_1", "pi_1"),
    ]


async def test_list_refunds_needs_exactly_one_filter() -> None:
    async with stripe_api() as (gw, api):
        with pytest.raises(ValueError):
            await gw.list_refunds()
        with pytest.raises(ValueError):
            await gw.list_refunds(charge="ch_1", payment_intent="pi_1")
    assert not api.calls
