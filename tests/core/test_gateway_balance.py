"""Balance, balance transactions (reconciliation) and events."""

from __future__ import annotations

import httpx

from core.stripe_types import Balance
from tests.core.stripe_fixtures import (
    CREATED,
    assert_read,
    balance,
    balance_transaction,
    event,
    listing,
    stripe_api,
)


async def test_retrieve_balance_sums_per_currency() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/balance").respond(200, json=balance())
        result = await gw.retrieve_balance()
    assert assert_read(route.calls.last.request, "/v1/balance") == {}
    assert result == Balance(available={"usd": 10000, "eur": 300}, pending={"usd": 4825})


async def test_list_balance_transactions_with_filters() -> None:
    page = listing("/v1/balance_transactions", [balance_transaction()], has_more=False)
    async with stripe_api() as (gw, api):
        route = api.get("/v1/balance_transactions").respond(200, json=page)
        result = await gw.list_balance_transactions(
            created_gte=CREATED, created_lt=CREATED + 86400, type="charge", limit=50
        )
    assert assert_read(route.calls.last.request, "/v1/balance_transactions") == {
        "created[gte]": str(CREATED),
        "created[lt]": str(CREATED + 86400),
        "type": "charge",
        "limit": "50",
    }
    assert not result.has_more
    (txn,) = result.data
    assert (txn.id, txn.amount, txn.fee, txn.net) == ("txn_1", 5000, 175, 4825)
    assert (txn.type, txn.source, txn.status) == ("charge", "ch_1", "pending")
    assert txn.reporting_category == "charge"
    assert txn.available_on == CREATED + 2 * 86400


async def test_list_balance_transactions_without_filters() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/balance_transactions").respond(
            200, json=listing("/v1/balance_transactions", [])
        )
        await gw.list_balance_transactions()
    assert assert_read(route.calls.last.request, "/v1/balance_transactions") == {"limit": "100"}


async def test_iter_balance_transactions_follows_cursor() -> None:
    transfer_txn = balance_transaction(
        "txn_2",
        type="transfer",
        amount=-4000,
        fee=0,
        net=-4000,
        source="tr_1",
        reporting_category="transfer",
    )
    pages = [
        listing("/v1/balance_transactions", [balance_transaction("txn_3"), transfer_txn], True),
        listing("/v1/balance_transactions", [balance_transaction("txn_1")], False),
    ]
    async with stripe_api() as (gw, api):
        route = api.get("/v1/balance_transactions")
        route.side_effect = [httpx.Response(200, json=p) for p in pages]
        seen = [t async for t in gw.iter_balance_transactions(created_gte=CREATED, page_size=2)]
    assert [t.id for t in seen] == ["txn_3", "txn_2", "txn_1"]
    assert seen[1].amount == -4000 and seen[1].source == "tr_1"
    first, second = (assert_read(c.request, "/v1/balance_transactions") for c in route.calls)
    assert first == {"created[gte]": str(CREATED), "limit": "2"}
    assert second == {"created[gte]": str(CREATED), "limit": "2", "starting_after": "txn_2"}


async def test_retrieve_event() -> None:
    async with stripe_api() as (gw, api):
        route = api.get("/v1/events/evt_1").respond(200, json=event())
        result = await gw.retrieve_event("evt_1")
    request = route.calls.last.request
    assert assert_read(request, "/v1/events/evt_1") == {}
    assert "Stripe-Account" not in request.headers
    assert (result.id, result.type, result.created) == (
        "evt_1",
        "checkout.session.completed",
        CREATED,
    )
    assert result.account is None
    assert result.data_object["id"] == "cs_test_1"
    assert result.data_object["payment_intent"] == "pi_1"
    assert result.previous_attributes is None
    assert result.raw["object"] == "event"


async def test_retrieve_connect_event_sends_stripe_account() -> None:
    body = event(
        "evt_2",
        type="account.updated",
        account="acct_1Coach",
        data={
            "object": {"id": "acct_1Coach", "object": "account"},
            "previous_attributes": {"payouts_enabled": False},
        },
    )
    async with stripe_api() as (gw, api):
        route = api.get("/v1/events/evt_2").respond(200, json=body)
        result = await gw.retrieve_event("evt_2", account="acct_1Coach")
    assert route.calls.last.request.headers["Stripe-Account"] == "acct_1Coach"
    assert result.account == "acct_1Coach"
    assert result.previous_attributes == {"payouts_enabled": False}
