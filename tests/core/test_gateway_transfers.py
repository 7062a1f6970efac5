"""Transfers to connected accounts: create, retrieve, list, find, reverse."""

from __future__ import annotations

import httpx

from core.stripe_types import Page, Transfer, TransferReversal
from tests.core.stripe_fixtures import (
    CREATED,
    assert_read,
    assert_write,
    listing,
    stripe_api,
    transfer,
    transfer_reversal,
)


async def test_create_transfer_sends_every_field_and_key() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers").respond(200, json=transfer())
        result = await gw.create_transfer(
            amount=4000,
            currency="usd",
            destination="acct_1Coach",
            transfer_group="booking-7",
            metadata={"payout_id": "11"},
            source_transaction="ch_1",
            description="Payout 11",
            idempotency_key="coachpay:transfer:11",
        )
    fields = assert_write(route.calls.last.request, "POST", "/v1/transfers", "coachpay:transfer:11")
    assert fields == {
        "amount": "4000",
        "currency": "usd",
        "destination": "acct_1Coach",
        "transfer_group": "booking-7",
        "metadata[payout_id]": "11",
        "source_transaction": "ch_1",
        "description": "Payout 11",
    }
    assert result == Transfer(
        id="tr_1",
        amount=4000,
        amount_reversed=0,
        currency="usd",
        destination="acct_1Coach",
        transfer_group="booking-7",
        metadata={"payout_id": "11"},
        reversed=False,
        source_transaction="ch_1",
        created=CREATED,
        reversals=Page(data=(), has_more=False),
    )


async def test_create_transfer_omits_optional_fields() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers").respond(200, json=transfer(source_transaction=None))
        result = await gw.create_transfer(
            amount=4000,
            currency="usd",
            destination="acct_1Coach",
            metadata={},
            idempotency_key="coachpay:transfer:12",
        )
    fields = assert_write(route.calls.last.request, "POST", "/v1/transfers", "coachpay:transfer:12")
    assert fields == {"amount": "4000", "currency": "usd", "destination": "acct_1Coach"}
    assert result.source_transaction is None


async def test_retrieve_partially_reversed_transfer() -> None:
    body = transfer(amount_reversed=1000)
    async with stripe_api() as (gw, api):
        route = api.get("/v1/transfers/tr_1").respond(200, json=body)
        result = await gw.retrieve_transfer("tr_1")
    assert assert_read(route.calls.last.request, "/v1/transfers/tr_1") == {}
    assert result.amount_reversed == 1000
    assert not result.reversed


async def test_list_transfers_by_group() -> None:
    page = listing("/v1/transfers", [transfer("tr_2"), transfer("tr_1")], has_more=True)
    async with stripe_api() as (gw, api):
        route = api.get("/v1/transfers").respond(200, json=page)
        result = await gw.list_transfers(transfer_group="booking-7", limit=2)
    assert assert_read(route.calls.last.request, "/v1/transfers") == {
        "transfer_group": "booking-7",
        "limit": "2",
    }
    assert [t.id for t in result.data] == ["tr_2", "tr_1"]
    assert result.has_more
    assert result.last_id == "tr_1"


async def test_list_transfers_by_destination_after_cursor() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/transfers").respond(200, json=listing("/v1/transfers", []))
        result = await gw.list_transfers(destination="acct_1Coach", starting_after="tr_9")
    assert assert_read(route.calls.last.request, "/v1/transfers") == {
        "destination": "acct_1Coach",
        "limit": "100",
        "starting_after": "tr_9",
    }
    assert result.data == ()
    assert not result.has_more
    assert result.last_id is None


async def test_find_transfer_by_metadata_pages_until_found() -> None:
    first = listing("/v1/transfers", [transfer("tr_3", metadata={"payout_id": "10"})], True)
    second = listing("/v1/transfers", [transfer("tr_2", metadata={"payout_id": "11"})], True)
    async with stripe_api() as (gw, api):
        route = api.get("/v1/transfers")
        route.side_effect = [
            httpx.Response(200, json=first),
            httpx.Response(200, json=second),
        ]
        found = await gw.find_transfer_by_metadata(
            destination="acct_1Coach", transfer_group="booking-7", key="payout_id", value="11"
        )
    assert found is not None and found.id == "tr_2"
    assert route.call_count == 2  # stopped without fetching a third page
    queries = [assert_read(call.request, "/v1/transfers") for call in route.calls]
    assert queries[0] == {
        "destination": "acct_1Coach",
        "transfer_group": "booking-7",
        "limit": "100",
    }
    assert queries[1]["starting_after"] == "tr_3"


async def test_find_transfer_by_metadata_returns_none_when_absent() -> None:
    page = listing("/v1/transfers", [transfer("tr_1", metadata={"payout_id": "10"})])
    async with stripe_api() as (gw, api):
        route = api.get("/v1/transfers").respond(200, json=page)
        found = await gw.find_transfer_by_metadata(
            destination="acct_1Coach", transfer_group=None, key="payout_id", value="11"
        )
    assert found is None
    assert route.call_count == 1
    assert "transfer_group" not in assert_read(route.calls.last.request, "/v1/transfers")


async def test_create_transfer_reversal() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers/tr_1/reversals").respond(200, json=transfer_reversal())
        result = await gw.create_transfer_reversal(
            "tr_1", amount=1000, metadata={"reversal_id": "3"}, idempotency_key="coachpay:rev:3"
        )
    request = route.calls.last.request
    fields = assert_write(request, "POST", "/v1/transfers/tr_1/reversals", "coachpay:rev:3")
    assert fields == {"amount": "1000", "metadata[reversal_id]": "3"}
    assert result == TransferReversal(
        id="trr_1",
        amount=1000,
        currency="usd",
        transfer_id="tr_1",
        metadata={"reversal_id": "3"},
        created=CREATED,
    )


async def test_full_transfer_reversal_omits_amount() -> None:
    async with stripe_api() as (gw, api):
        route = api.post("/v1/transfers/tr_1/reversals").respond(
            200, json=transfer_reversal(amount=4000)
        )
        result = await gw.create_transfer_reversal(
            "tr_1", metadata={}, idempotency_key="coachpay:rev:4"
        )
    request = route.calls.last.request
    assert assert_write(request, "POST", "/v1/transfers/tr_1/reversals", "coachpay:rev:4") == {}
    assert result.amount == 4000
