"""Refunds, transfers, reversals, disputes, payouts, balance and balance transactions."""

from __future__ import annotations

import httpx
import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import (
    Receiver,
    create_coach,
    fund_platform,
    onboarded_coach,
    paid_session,
)


def test_partial_refunds_then_over_refund_is_refused(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    session = paid_session(client, emulator, 10_000)
    first = client.v1.refunds.create({"payment_intent": session.payment_intent, "amount": 3_000})
    assert first.id.startswith("re_") and first.status == "succeeded"
    intent = client.v1.payment_intents.retrieve(session.payment_intent)
    second = client.v1.refunds.create({"charge": intent.latest_charge, "amount": 2_000})
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create({"charge": intent.latest_charge, "amount": 5_001})
    assert too_much.value.code == "amount_too_large"
    rest = client.v1.refunds.create({"charge": intent.latest_charge})
    assert rest.amount == 5_000
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create({"charge": intent.latest_charge})
    assert again.value.code == "charge_already_refunded"
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (10_000, True)
    listed = client.v1.refunds.list({"charge": charge.id})
    assert [r.id for r in listed.data] == [rest.id, second.id, first.id]
    assert client.v1.refunds.retrieve(first.id).amount == 3_000
    txns = client.v1.balance_transactions.list({"type": "refund"})
    assert sorted(t.amount for t in txns.data) == [-5_000, -3_000, -2_000]
    emulator.flush_webhooks()
    assert receiver.types().count("charge.refunded") == 3


def test_transfer_and_list_filters(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 5_000)
    before = client.v1.balance.retrieve().available[0].amount
    transfer = client.v1.transfers.create(
        {
            "amount": 4_000,
            "currency": "usd",
            "destination": coach,
            "transfer_group": "booking-7",
            "metadata": {"payout_id": "9"},
        }
    )
    data = transfer.to_dict()
    assert data["id"].startswith("tr_")
    assert data["object"] == "transfer"
    assert (data["amount"], data["destination"], data["transfer_group"]) == (
        4_000,
        coach,
        "booking-7",
    )
    assert data["metadata"] == {"payout_id": "9"}
    assert client.v1.balance.retrieve().available[0].amount == before - 4_000
    connected = client.v1.balance.retrieve(options={"stripe_account": coach})
    assert connected.available[0].amount == 4_000
    assert client.v1.transfers.retrieve(transfer.id).amount == 4_000
    assert [t.id for t in client.v1.transfers.list({"transfer_group": "booking-7"}).data] == [
        transfer.id
    ]
    assert [t.id for t in client.v1.transfers.list({"destination": coach}).data] == [transfer.id]
    assert client.v1.transfers.list({"transfer_group": "other"}).data == []
    txn = client.v1.balance_transactions.retrieve(transfer.balance_transaction)
    assert (txn.type, txn.amount) == ("transfer", -4_000)


def test_balance_insufficient(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    coach = onboarded_coach(client, emulator)
    with pytest.raises(stripe.InvalidRequestError) as short:
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": coach})
    assert short.value.http_status == 400
    assert short.value.code == "balance_insufficient"
    assert short.value.error.type == "invalid_request_error"
    assert emulator.state.transfers == {}


def test_pending_funds_until_available(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    emulator.control("POST", "config", {"funds_delay_seconds": 3600})
    coach = onboarded_coach(client, emulator)
    paid_session(client, emulator, 10_000)
    balance = client.v1.balance.retrieve()
    assert (balance.available[0].amount, balance.pending[0].amount) == (0, 9_680)
    with pytest.raises(stripe.InvalidRequestError) as short:
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": coach})
    assert short.value.code == "balance_insufficient"
    emulator.control("POST", "balance/available")
    balance = client.v1.balance.retrieve()
    assert (balance.available[0].amount, balance.pending[0].amount) == (9_680, 0)
    client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": coach})


def test_transfer_refused_without_transfers_capability(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    fund_platform(client, emulator, 1_000)
    account = create_coach(client)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": account.id})
    assert refused.value.code == "insufficient_capabilities_for_transfer"
    assert refused.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": "acct_x"})
    assert missing.value.code == "resource_missing"


def test_transfer_reversal(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 5_000)
    transfer = client.v1.transfers.create(
        {"amount": 5_000, "currency": "usd", "destination": coach}
    )
    reversal = client.v1.transfers.reversals.create(transfer.id, {"amount": 1_500})
    assert reversal.id.startswith("trr_")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.reversals.create(transfer.id, {"amount": 3_501})
    after = client.v1.transfers.retrieve(transfer.id)
    assert (after.amount_reversed, after.reversed) == (1_500, False)
    txn = client.v1.balance_transactions.retrieve(reversal.balance_transaction)
    assert (txn.type, txn.amount) == ("transfer_refund", 1_500)
    assert [r.id for r in client.v1.transfers.reversals.list(transfer.id).data] == [reversal.id]
    emulator.flush_webhooks()
    assert receiver.types("/platform").count("transfer.reversed") == 1


def test_dispute_lost_and_won(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    session = paid_session(client, emulator, 10_000)
    charge_id = client.v1.payment_intents.retrieve(session.payment_intent).latest_charge
    start = client.v1.balance.retrieve().available[0].amount
    dispute = emulator.control("POST", f"charges/{charge_id}/dispute", {"reason": "fraudulent"})
    assert dispute["id"].startswith("du_")
    assert dispute["status"] == "needs_response"
    assert client.v1.balance.retrieve().available[0].amount == start - 10_000 - 1_500
    assert client.v1.charges.retrieve(charge_id).disputed is True
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"charge": charge_id})
    assert refused.value.code == "charge_disputed"
    won = emulator.control("POST", f"disputes/{dispute['id']}/close", {"outcome": "won"})
    assert won["status"] == "won"
    assert client.v1.balance.retrieve().available[0].amount == start

    other = paid_session(client, emulator, 2_000)
    other_charge = client.v1.payment_intents.retrieve(other.payment_intent).latest_charge
    lost = emulator.control("POST", f"charges/{other_charge}/dispute")
    emulator.control("POST", f"disputes/{lost['id']}/close", {"outcome": "lost"})
    emulator.flush_webhooks()
    types = receiver.types("/platform")
    assert types.count("charge.dispute.created") == 2
    assert types.count("charge.dispute.closed") == 2
    assert types.count("charge.dispute.funds_reinstated") == 1
    disputes = client.v1.balance_transactions.list({"type": "adjustment"}).data
    assert len(disputes) == 3


def test_payouts_to_coach_bank(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 3_000)
    client.v1.transfers.create({"amount": 3_000, "currency": "usd", "destination": coach})
    failed = emulator.control(
        "POST", f"accounts/{coach}/payouts", {"outcome": "failed", "failure_code": "account_closed"}
    )
    assert failed["status"] == "failed" and failed["id"].startswith("po_")
    paid = emulator.control("POST", f"accounts/{coach}/payouts", {"outcome": "paid"})
    assert (paid["status"], paid["amount"]) == ("paid", 3_000)
    assert client.v1.balance.retrieve(options={"stripe_account": coach}).available[0].amount == 0
    emulator.flush_webhooks()
    connect = [r.event for r in receiver.received if r.path == "/connect"]
    payout_events = [e for e in connect if e["type"].startswith("payout.")]
    assert [e["type"] for e in payout_events] in (
        ["payout.failed", "payout.paid"],
        ["payout.paid", "payout.failed"],
    )
    assert all(e["account"] == coach for e in payout_events)


def test_balance_transactions_filters_and_pagination(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    for amount in (1_000, 2_000, 3_000):
        paid_session(client, emulator, amount)
    everything = client.v1.balance_transactions.list({"limit": 100}).data
    assert [t.amount for t in everything] == [3_000, 2_000, 1_000]
    first = client.v1.balance_transactions.list({"limit": 2})
    assert first.has_more is True
    second = client.v1.balance_transactions.list({"limit": 2, "starting_after": first.data[-1].id})
    assert [t.amount for t in second.data] == [1_000] and second.has_more is False
    back = client.v1.balance_transactions.list({"limit": 2, "ending_before": second.data[0].id})
    assert [t.amount for t in back.data] == [3_000, 2_000]
    created = everything[0].created
    window = client.v1.balance_transactions.list(
        {"created": {"gte": created - 5, "lt": created + 5}, "type": "charge"}
    )
    assert len(window.data) == 3
    assert client.v1.balance_transactions.list({"created": {"gte": created + 60}}).data == []


def test_a_refund_the_card_network_returns_fails_and_its_money_comes_back(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    session = paid_session(client, emulator, 10_000)
    intent = client.v1.payment_intents.retrieve(session.payment_intent)
    made = client.v1.refunds.create({"charge": intent.latest_charge, "amount": 4_000})
    before = client.v1.balance.retrieve().to_dict()
    failed = emulator.control(
        "POST", f"refunds/{made.id}/fail", {"failure_reason": "lost_or_stolen_card"}
    )
    assert (failed["status"], failed["failure_reason"]) == ("failed", "lost_or_stolen_card")
    again = client.v1.refunds.retrieve(made.id)
    assert again.status == "failed"
    back = client.v1.balance_transactions.retrieve(again.failure_balance_transaction)
    assert (back.type, back.amount, back.source) == ("refund_failure", 4_000, made.id)
    after = client.v1.balance.retrieve().to_dict()
    moved = sum(b["amount"] for b in after["pending"] + after["available"]) - sum(
        b["amount"] for b in before["pending"] + before["available"]
    )
    assert moved == 4_000
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    # The whole charge can be refunded again; a failed refund cannot fail twice.
    whole = client.v1.refunds.create({"charge": charge.id})
    assert whole.amount == 10_000
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        emulator.control("POST", f"refunds/{whole.id}/fail", {"failure_reason": "sunspots"})
    assert "failure_reason must be one of" in unknown.value.response.text
    with pytest.raises(httpx.HTTPStatusError) as twice:
        emulator.control("POST", f"refunds/{made.id}/fail")
    assert twice.value.response.status_code == 400
    assert "only a made refund can fail" in twice.value.response.text
    emulator.flush_webhooks()
    assert receiver.types().count("refund.failed") == 1
    assert receiver.types().count("refund.updated") == 1
