"""Customers through the real Stripe SDK: create, read, list, and on Checkout Sessions."""

from __future__ import annotations

import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import create_session


def _customer(client: stripe.StripeClient, **extra: object) -> stripe.Customer:
    params = {"email": "mentee@example.com", "metadata": {"user_id": "7"}, **extra}
    return client.v1.customers.create(params)  # type: ignore[arg-type]


def test_create_and_retrieve(client: stripe.StripeClient) -> None:
    made = _customer(client, name="Ada")
    assert made.id.startswith("cus_")
    assert made.object == "customer"
    assert (made.email, made.name, made.metadata.to_dict()) == (
        "mentee@example.com",
        "Ada",
        {"user_id": "7"},
    )
    got = client.v1.customers.retrieve(made.id)
    assert got.id == made.id and got.email == "mentee@example.com"


def test_same_idempotency_key_makes_one_customer(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "coachpay:customer:7"}
    params = {"email": "a@example.com", "metadata": {"user_id": "7"}}
    first = client.v1.customers.create(params, options)  # type: ignore[arg-type]
    again = client.v1.customers.create(params, options)  # type: ignore[arg-type]
    assert first.id == again.id
    listed = client.v1.customers.list({"email": "a@example.com"})
    assert [c.id for c in listed.data] == [first.id]


def test_unknown_customer_and_bad_params(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create({"email": "a@example.com", "shoe_size": 44})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as bad_email:
        client.v1.customers.create({"email": "not-an-email"})
    assert bad_email.value.param == "email"


def test_checkout_session_carries_the_customer_to_its_payment_intent(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    customer = _customer(client, email="saved@example.com")
    session = create_session(client, customer=customer.id, customer_email=None)
    assert session.customer == customer.id
    emulator.control("POST", f"checkout/sessions/{session.id}/pay", {"outcome": "succeeded"})
    paid = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})
    assert paid.payment_status == "paid"
    intent = paid.payment_intent
    assert not isinstance(intent, str) and intent is not None
    assert intent.customer == customer.id
    # The customer's email is the one Checkout used.
    assert paid.customer_details is not None and paid.customer_details.email == "saved@example.com"


def test_checkout_refuses_an_unknown_customer_or_both_customer_fields(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        create_session(client, customer="cus_missing", customer_email=None)
    assert unknown.value.http_status == 400 and unknown.value.param == "customer"
    customer = _customer(client)
    with pytest.raises(stripe.InvalidRequestError) as both:
        create_session(client, customer=customer.id)  # customer_email is set by the helper
    assert both.value.param == "customer_email"
