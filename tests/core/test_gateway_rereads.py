"""The gateway's re-reads for webhook handlers, against respx: the exact requests Stripe
gets (path, expand[], Stripe-Account) and what comes back parsed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.stripe_errors import StripeNotFound
from core.stripe_types import Dispute, Page, StripePayout, TransferReversal
from tests.core.stripe_fixtures import (
    CREATED,
    assert_read,
    balance_transaction,
    charge,
    error_body,
    listing,
    refund,
    stripe_api,
    transfer,
    transfer_reversal,
)


def _dispute(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "du_1",
        "object": "dispute",
        "amount": 6000,
        "currency": "usd",
        "status": "won",
        "charge": charge(),
        "payment_intent": "pi_1",
        "balance_transactions": [
            balance_transaction("txn_w", amount=-6000, fee=1500, net=-7500, type="adjustment"),
            balance_transaction("txn_r", amount=6000, fee=-1500, net=7500, type="adjustment"),
        ],
        "created": CREATED,
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "reason": "fraudulent",
    }
    return {**body, **over}


async def test_retrieve_refund_expands_its_charge() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/refunds/re_1").respond(200, json=refund(charge=charge(amount=10_000)))
        found = await gw.retrieve_refund("re_1")
    assert assert_read(route.calls.last.request, "/v1/refunds/re_1") == {"expand[0]": "charge"}
    assert found.charge_id == "ch_1" and found.charge is not None
    assert (found.charge.id, found.charge.amount) == ("ch_1", 10_000)


async def test_retrieve_dispute_expands_its_charge_and_reads_the_fees() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/disputes/du_1").respond(200, json=_dispute())
        found = await gw.retrieve_dispute("du_1")
    assert assert_read(route.calls.last.request, "/v1/disputes/du_1") == {"expand[0]": "charge"}
    assert isinstance(found, Dispute)
    assert (found.amount, found.status, found.fee, found.fee_returned) == (6000, "won", 1500, 1500)
    assert (found.charge_id, found.payment_intent_id) == ("ch_1", "pi_1")
    assert found.charge is not None and found.charge.amount == charge()["amount"]


async def test_all_reversals_come_from_the_transfer_when_it_embeds_them_all() -> None:
    embedded = listing("/v1/transfers/tr_1/reversals", [transfer_reversal("trr_2")])
    async with stripe_api() as (gw, api):
        api.get("/v1/transfers/tr_1").respond(200, json=transfer(reversals=embedded))
        pages = api.get("/v1/transfers/tr_1/reversals")
        tr = await gw.retrieve_transfer("tr_1")
        found = await gw.all_transfer_reversals(tr)
    assert tr.reversals == Page(data=found, has_more=False)
    assert [r.id for r in found] == ["trr_2"] and pages.call_count == 0


async def test_all_reversals_are_paged_when_the_transfer_has_more() -> None:
    url = "/v1/transfers/tr_1/reversals"
    first = [transfer_reversal(f"trr_{i}") for i in (12, 11)]
    second = [transfer_reversal("trr_10")]

    def page(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        body = listing(url, first, has_more=True) if after is None else listing(url, second)
        return httpx.Response(200, json=body)

    async with stripe_api() as (gw, api):
        api.get("/v1/transfers/tr_1").respond(
            200, json=transfer(reversals=listing(url, first, has_more=True))
        )
        route = api.get(url).mock(side_effect=page)
        found = await gw.all_transfer_reversals(await gw.retrieve_transfer("tr_1"))
    assert [r.id for r in found] == ["trr_12", "trr_11", "trr_10"]
    assert all(isinstance(r, TransferReversal) and r.created == CREATED for r in found)
    queries = [assert_read(c.request, url) for c in route.calls]
    assert queries == [{"limit": "100"}, {"limit": "100", "starting_after": "trr_11"}]


async def test_retrieve_payout_is_made_on_the_connected_account() -> None:
    body = {
        "id": "po_1",
        "object": "payout",
        "amount": 2000,
        "currency": "usd",
        "status": "failed",
        "arrival_date": CREATED + 86400,
        "failure_code": "account_closed",
        "failure_message": "The bank account has been closed.",
        "created": CREATED,
    }
    async with stripe_api() as (gw, api):
        route = api.get("/v1/payouts/po_1").respond(200, json=body)
        found = await gw.retrieve_payout("po_1", account="acct_1Coach")
    request = route.calls.last.request
    assert assert_read(request, "/v1/payouts/po_1") == {}
    assert request.headers["Stripe-Account"] == "acct_1Coach"
    assert found == StripePayout(
        id="po_1",
        amount=2000,
        currency="usd",
        status="failed",
        arrival_date=CREATED + 86400,
        failure_code="account_closed",
        failure_message="The bank account has been closed.",
        created=CREATED,
    )


async def test_an_object_stripe_does_not_know_is_not_found() -> None:
    missing = error_body("invalid_request_error", "No such payout: 'po_x'", "resource_missing")
    async with stripe_api() as (gw, api):
        api.get("/v1/payouts/po_x").respond(404, json=missing)
        with pytest.raises(StripeNotFound):
            await gw.retrieve_payout("po_x", account="acct_1Coach")
