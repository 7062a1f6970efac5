"""The reads a webhook handler makes to check an event against Stripe, through the real SDK:
a refund or dispute with its charge expanded, a transfer with its reversals (the 10 newest
embedded, the rest paged), a connected account's payout (only with its Stripe-Account)."""

from __future__ import annotations

import httpx
import pytest
import stripe

from emulator.server import EmulatorServer
from tests.emulator.conftest import Receiver, fund_platform, onboarded_coach, paid_session


def _charge_of(client: stripe.StripeClient, session: stripe.checkout.Session) -> str:
    return str(client.v1.payment_intents.retrieve(str(session.payment_intent)).latest_charge)


def test_refund_retrieved_with_its_charge_expanded(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    session = paid_session(client, emulator, 10_000)
    made = client.v1.refunds.create({"payment_intent": str(session.payment_intent), "amount": 2500})
    plain = client.v1.refunds.retrieve(made.id)
    assert (plain.amount, plain.status, plain.charge) == (
        2500,
        "succeeded",
        _charge_of(client, session),
    )
    full = client.v1.refunds.retrieve(made.id, {"expand": ["charge"]})
    charge = full.charge
    assert isinstance(charge, stripe.Charge)
    assert (charge.amount, charge.amount_refunded, charge.payment_intent) == (
        10_000,
        2500,
        session.payment_intent,
    )
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.refunds.retrieve("re_neverMade")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_dispute_retrieved_and_listed_with_its_charge(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    session = paid_session(client, emulator, 10_000)
    charge_id = _charge_of(client, session)
    opened = emulator.control("POST", f"charges/{charge_id}/dispute", {"amount": 6000})
    dispute = client.v1.disputes.retrieve(opened["id"], {"expand": ["charge"]})
    assert (dispute.amount, dispute.status, dispute.payment_intent) == (
        6000,
        "needs_response",
        session.payment_intent,
    )
    assert isinstance(dispute.charge, stripe.Charge) and dispute.charge.id == charge_id
    [txn] = dispute.balance_transactions
    assert (txn.amount, txn.fee) == (-6000, 1500)
    assert [d.id for d in client.v1.disputes.list({"charge": charge_id}).data] == [opened["id"]]
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.disputes.retrieve("du_neverMade")
    assert missing.value.http_status == 404


def test_inquiry_withdraws_nothing_until_escalated_and_stays_refundable(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    session = paid_session(client, emulator, 10_000)
    charge_id = _charge_of(client, session)
    before = client.v1.balance.retrieve().available[0].amount
    inquiry = emulator.control("POST", f"charges/{charge_id}/dispute", {"inquiry": True})
    assert (inquiry["status"], inquiry["balance_transactions"]) == ("warning_needs_response", [])
    assert client.v1.balance.retrieve().available[0].amount == before
    # Still refundable while an inquiry: a refund of part of it.
    client.v1.refunds.create({"charge": charge_id, "amount": 1000})
    escalated = emulator.control("POST", f"disputes/{inquiry['id']}/escalate")
    assert escalated["status"] == "needs_response" and not escalated["is_charge_refundable"]
    assert client.v1.balance.retrieve().available[0].amount == before - 1000 - 10_000 - 1500
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"charge": charge_id, "amount": 1000})
    assert refused.value.code == "charge_disputed"
    emulator.flush_webhooks()
    # Both are sent; the emulator delivers concurrently, so their arrival order is free.
    assert sorted(receiver.types("/platform")[-2:]) == [
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
    ]
    other = emulator.control(
        "POST",
        f"charges/{_charge_of(client, paid_session(client, emulator))}/dispute",
        {"inquiry": True},
    )
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control("POST", f"disputes/{other['id']}/close", {"outcome": "won"})
    closed = emulator.control(
        "POST", f"disputes/{other['id']}/close", {"outcome": "warning_closed"}
    )
    assert closed["status"] == "warning_closed"
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control("POST", f"disputes/{other['id']}/escalate")


def test_transfer_embeds_its_ten_newest_reversals_the_rest_are_paged(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    coach = onboarded_coach(client, emulator)
    fund_platform(client, emulator, 5_000)
    transfer = client.v1.transfers.create({"amount": 1200, "currency": "usd", "destination": coach})
    made = [
        client.v1.transfers.reversals.create(transfer.id, {"amount": 100}).id for _ in range(12)
    ]
    again = client.v1.transfers.retrieve(transfer.id)
    assert (again.amount_reversed, again.reversed) == (1200, True)
    assert [r.id for r in again.reversals.data] == made[::-1][:10]
    assert again.reversals.has_more
    first = client.v1.transfers.reversals.list(transfer.id, {"limit": 5})
    rest = client.v1.transfers.reversals.list(
        transfer.id, {"limit": 100, "starting_after": first.data[-1].id}
    )
    assert [r.id for r in [*first.data, *rest.data]] == made[::-1]
    assert first.has_more and not rest.has_more
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.transfers.retrieve("tr_neverMade")
    assert missing.value.http_status == 404


def test_payout_is_read_on_its_connected_account_only(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    coach, other = onboarded_coach(client, emulator), onboarded_coach(client, emulator)
    body = {"amount": 700, "currency": "usd", "outcome": "failed", "force": True}
    made = emulator.control("POST", f"accounts/{coach}/payouts", body)
    payout = client.v1.payouts.retrieve(made["id"], options={"stripe_account": coach})
    assert (payout.amount, payout.status, payout.failure_code) == (700, "failed", "account_closed")
    listed = client.v1.payouts.list({"status": "failed"}, {"stripe_account": coach})
    assert [p.id for p in listed.data] == [made["id"]]
    assert client.v1.payouts.list(options={"stripe_account": other}).data == []
    for options in ({"stripe_account": other}, {}):
        with pytest.raises(stripe.InvalidRequestError) as missing:
            client.v1.payouts.retrieve(made["id"], options=options)  # type: ignore[arg-type]
        assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as unknown_account:
        client.v1.payouts.retrieve(made["id"], options={"stripe_account": "acct_neverMade"})
    assert unknown_account.value.http_status == 404
