"""Checkout Sessions: create, pay (each outcome), expire, with signed webhooks received."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import PLATFORM_SECRET, Receiver, create_session, paid_session


def test_create_session_shape(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    expires_at = int(time.time()) + 3600
    session = create_session(client, 2500, expires_at=expires_at)
    data = session.to_dict()
    assert data["id"].startswith("cs_test_")
    assert data["object"] == "checkout.session"
    assert data["status"] == "open"
    assert data["payment_status"] == "unpaid"
    assert data["amount_total"] == 2500
    assert data["currency"] == "usd"
    assert data["expires_at"] == expires_at
    assert data["metadata"] == {"booking_id": "7"}
    assert data["client_reference_id"] == "booking-7"
    assert data["customer_email"] == "mentee@example.com"
    assert data["payment_intent"] is None
    assert data["url"].startswith(f"{emulator.base_url}/_emulator/checkout/")
    items = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["line_items"]})
    assert items.line_items.data[0].quantity == 1
    assert items.line_items.data[0].price.unit_amount == 2500


def test_session_validation(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as too_soon:
        create_session(client, expires_at=int(time.time()) + 60)
    assert too_soon.value.param == "expires_at"
    with pytest.raises(stripe.InvalidRequestError) as no_items:
        client.v1.checkout.sessions.create({"mode": "payment", "success_url": "https://x"})
    assert no_items.value.code == "parameter_missing"


def test_pay_succeeded_creates_money_and_signed_events(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    session = paid_session(client, emulator, 10_000)
    assert session.status == "complete"
    assert session.payment_status == "paid"
    intent = client.v1.payment_intents.retrieve(
        session.payment_intent, {"expand": ["latest_charge.balance_transaction"]}
    )
    assert intent.status == "succeeded"
    assert intent.transfer_group == "booking-7"
    assert intent.metadata.to_dict() == {"booking_id": "7"}
    charge = intent.latest_charge
    assert charge.id.startswith("ch_")
    assert charge.paid is True
    txn = charge.balance_transaction
    assert txn.id.startswith("txn_")
    assert (txn.amount, txn.fee, txn.net, txn.type) == (10_000, 320, 9_680, "charge")
    assert txn.fee_details[0].type == "stripe_fee"
    same = client.v1.charges.retrieve(charge.id, {"expand": ["balance_transaction"]})
    assert same.balance_transaction.id == txn.id
    balance = client.v1.balance.retrieve()
    assert balance.available[0].amount == 9_680

    emulator.flush_webhooks()
    # Several delivery workers: like Stripe, no ordering guarantee.
    assert sorted(receiver.types("/platform")) == [
        "charge.succeeded",
        "checkout.session.completed",
        "payment_intent.created",
        "payment_intent.succeeded",
    ]
    completed = receiver.of_type("checkout.session.completed")[0]
    event = stripe.Webhook.construct_event(completed.payload, completed.signature, PLATFORM_SECRET)
    assert event.id.startswith("evt_")
    assert event.livemode is False
    assert event.data.object.payment_status == "paid"
    assert event.data.object.metadata["booking_id"] == "7"
    assert "account" not in event or event.account is None
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(completed.payload, completed.signature, "whsec_wrong")
    assert client.v1.events.retrieve(event.id).type == "checkout.session.completed"


def test_pay_failed_keeps_session_open_then_retry_succeeds(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    session = create_session(client)
    emulator.control("POST", f"checkout/sessions/{session.id}/pay", {"outcome": "failed"})
    after = client.v1.checkout.sessions.retrieve(session.id)
    assert after.status == "open"
    intent = client.v1.payment_intents.retrieve(after.payment_intent)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == "card_declined"
    emulator.control("POST", f"checkout/sessions/{session.id}/pay", {"outcome": "succeeded"})
    assert client.v1.payment_intents.retrieve(after.payment_intent).status == "succeeded"
    emulator.flush_webhooks()
    assert "payment_intent.payment_failed" in receiver.types()
    assert receiver.types().count("checkout.session.completed") == 1


def test_async_payment_succeeded_and_failed(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    ok = create_session(client)
    emulator.control("POST", f"checkout/sessions/{ok.id}/pay", {"outcome": "async_pending"})
    pending = client.v1.checkout.sessions.retrieve(ok.id)
    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    emulator.control("POST", f"checkout/sessions/{ok.id}/pay", {"outcome": "async_succeeded"})
    assert client.v1.checkout.sessions.retrieve(ok.id).payment_status == "paid"

    bad = create_session(client)
    emulator.control("POST", f"checkout/sessions/{bad.id}/pay", {"outcome": "async_failed"})
    failed = client.v1.checkout.sessions.retrieve(bad.id)
    assert failed.payment_status == "unpaid"
    emulator.flush_webhooks()
    types = receiver.types()
    assert types.count("checkout.session.completed") == 2
    assert "checkout.session.async_payment_succeeded" in types
    assert "checkout.session.async_payment_failed" in types


def test_expire_by_api_control_and_clock(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    by_api = create_session(client)
    expired = client.v1.checkout.sessions.expire(by_api.id)
    assert expired.status == "expired"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(by_api.id)
    by_control = create_session(client)
    emulator.control("POST", f"checkout/sessions/{by_control.id}/expire")
    by_clock = create_session(client, expires_at=int(time.time()) + 1800)
    emulator.control("POST", "clock/advance", {"seconds": 1801})
    assert client.v1.checkout.sessions.retrieve(by_clock.id).status == "expired"
    paid = httpx.post(
        f"{emulator.base_url}/_emulator/checkout/sessions/{by_clock.id}/pay",
        json={"outcome": "succeeded"},
    )
    assert paid.status_code == 400
    emulator.flush_webhooks()
    assert receiver.types().count("checkout.session.expired") == 3


def test_hosted_page_pays_and_redirects(client: stripe.StripeClient) -> None:
    session = create_session(client)
    page = httpx.get(session.url)
    assert page.status_code == 200 and "Checkout" in page.text
    paid = httpx.get(session.url + "?outcome=succeeded")
    assert paid.status_code == 302
    assert paid.headers["location"] == f"https://coachpay.test/ok?cs={session.id}"
