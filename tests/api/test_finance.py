"""Finance endpoints over the hand-checked data set (tests/finance/seed.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, TxType, post
from tests.api.conftest import Tokens
from tests.finance.seed import day, seed

Client = AsyncTestClient[Litestar]
ENDPOINTS = ["summary", "transactions", "payouts", "trial-balance", "reconciliation"]
PERIOD = {"from": day(1).isoformat(), "to": day(20).isoformat()}


@pytest.fixture
async def seeded(clean_engine: AsyncEngine) -> dict[str, int]:
    async with AsyncSession(clean_engine) as db, db.begin():
        ids = await seed(db)
        # A three-decimal currency, to see its decimals (12.345 KWD at 20 %).
        cash = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "kwd"))
        fees = await get_account_id(db, AccountRef.platform(Kind.FEE_REVENUE, "kwd"))
        pend = await get_account_id(db, AccountRef.coach(3, Kind.PENDING, "kwd"))
        legs = [Leg(cash, 12345, "kwd"), Leg(fees, -2469, "kwd"), Leg(pend, -9876, "kwd")]
        r = await post(db, type=TxType.SESSION_PAYMENT, idempotency_key="seed:K", legs=legs,
                       occurred_at=day(13), coach_id=3, booking_id=5)  # fmt: skip
        ids["K"] = r.transaction_id
    return ids


async def test_finance_is_for_finance_and_admin_only(app_client: Client, tokens: Tokens) -> None:
    # One app for every case: each app start costs more than the requests.
    for endpoint in ENDPOINTS:
        url = f"/v1/finance/{endpoint}"
        assert (await app_client.get(url)).status_code == 401, endpoint
        for role in ("coach", "mentee"):
            r = await app_client.get(url, headers=tokens.headers(role))
            assert (r.status_code, r.json()["error"]) == (403, "Forbidden"), (endpoint, role)
    for role in ("finance", "admin"):
        r = await app_client.get("/v1/finance/trial-balance", headers=tokens.headers(role))
        assert r.status_code == 200


async def test_summary_hand_checked(app_client: Client, tokens: Tokens, seeded: Any) -> None:
    r = await app_client.get(
        "/v1/finance/summary", params=PERIOD, headers=tokens.headers("finance")
    )
    assert r.status_code == 200, r.text
    by = {t["currency"]: t for t in r.json()["totals"]}
    usd = by["usd"]
    assert (usd["gross_volume"], usd["platform_fees"], usd["processing_fees"]) == (18000, 2600, 612)
    assert (usd["net_platform_revenue"], usd["refunds"], usd["disputes"]) == (488, 2000, 4500)
    assert (usd["payouts_made"], usd["payouts_pending"], usd["coach_balances_outstanding"]) == (
        8000, 0, 2400,
    )  # fmt: skip
    assert usd["gross_volume_display"] == "180.00 USD"
    assert usd["net_platform_revenue_display"] == "4.88 USD"
    assert by["jpy"]["gross_volume_display"] == "5000 JPY"
    assert by["jpy"]["processing_fees_display"] == "180 JPY"
    assert by["kwd"]["gross_volume_display"] == "12.345 KWD"
    assert by["kwd"]["platform_fees_display"] == "2.469 KWD"


async def test_summary_grouped_and_filtered(
    app_client: Client, tokens: Tokens, seeded: Any
) -> None:
    params = {**PERIOD, "group": "week", "currency": "usd"}
    r = await app_client.get("/v1/finance/summary", params=params, headers=tokens.headers("admin"))
    body = r.json()
    assert [p["period_start"] for p in body["periods"]] == ["2031-03-03", "2031-03-10"]
    assert [p["payouts_made"] for p in body["periods"]] == [0, 8000]
    assert [t["currency"] for t in body["totals"]] == ["usd"]
    assert body["totals"][0]["gross_volume"] == 18000
    later = {**PERIOD, "from": day(8).isoformat(), "currency": "USD"}
    r = await app_client.get("/v1/finance/summary", params=later, headers=tokens.headers("finance"))
    assert r.json()["totals"][0]["gross_volume"] == 0


SUMMARY_BAD = [
    ({"from": "yesterday"}, "from"),
    ({"to": "2031-13-01"}, "to"),
    ({"from": "2031-03-05", "to": "2031-03-01"}, "from"),
    ({"from": "9" * 70}, "from"),
    ({"currency": "usdx"}, "currency"),
    ({"currency": "xyz"}, "currency"),
    ({"group": "year"}, "group"),
    ({"format": "xml"}, "format"),
]


async def test_summary_bad_input(app_client: Client, tokens: Tokens) -> None:
    for params, field in SUMMARY_BAD:
        r = await app_client.get(
            "/v1/finance/summary", params=params, headers=tokens.headers("finance")
        )
        assert r.status_code == 422, (params, r.text)
        assert field in r.json()["detail"], params


async def _all_pages(
    client: Client, tokens: Tokens, params: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        q = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get(
            "/v1/finance/transactions", params=q, headers=tokens.headers("finance")
        )
        assert r.status_code == 200, r.text
        rows += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("pagination does not end")


async def test_transactions_paginate(app_client: Client, tokens: Tokens, seeded: Any) -> None:
    small = await _all_pages(app_client, tokens, {**PERIOD, "limit": 4})
    whole = await _all_pages(app_client, tokens, {**PERIOD, "limit": 500})
    assert small == whole
    assert len(whole) == 14
    assert len({r["id"] for r in whole}) == 14
    a = next(r for r in whole if r["id"] == seeded["A"])
    assert (a["amount"], a["platform_fee"], a["coach_payout"], a["status"]) == (
        10000, 2000, 8000, "paid",
    )  # fmt: skip
    assert (a["amount_display"], a["coach_payout_display"]) == ("100.00 USD", "80.00 USD")
    k = next(r for r in whole if r["id"] == seeded["K"])
    assert k["amount_display"] == "12.345 KWD"


async def test_transactions_filters(app_client: Client, tokens: Tokens, seeded: Any) -> None:
    refunds = await _all_pages(app_client, tokens, {**PERIOD, "type": "refund"})
    assert [r["id"] for r in refunds] == [seeded["B-refund"]]
    coach2 = await _all_pages(app_client, tokens, {**PERIOD, "coach_id": 2})
    assert {r["id"] for r in coach2} == {seeded["D"], seeded["D-fee"]}
    assert all(r["currency"] == "jpy" for r in coach2)
    jpy = await _all_pages(app_client, tokens, {**PERIOD, "currency": "jpy"})
    assert {r["id"] for r in jpy} == {seeded["D"], seeded["D-fee"]}


TRANSACTIONS_BAD = [
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "-3"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "9" * 30}, "limit"),
    ({"coach_id": "0"}, "coach_id"),
    ({"coach_id": "1; DROP TABLE ledger_entries"}, "coach_id"),
    ({"type": "gift"}, "type"),
    ({"from": "not-a-date"}, "from"),
    ({"to": "2031-02-30T00:00:00"}, "to"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"currency": "<script>"}, "currency"),
]


async def test_transactions_bad_input(app_client: Client, tokens: Tokens) -> None:
    for params, field in TRANSACTIONS_BAD:
        r = await app_client.get(
            "/v1/finance/transactions", params=params, headers=tokens.headers("finance")
        )
        assert r.status_code == 422, (params, r.text)
        assert field in r.json()["detail"], params


async def test_transactions_csv_round_trips(
    app_client: Client, tokens: Tokens, seeded: Any
) -> None:
    whole = await _all_pages(app_client, tokens, {**PERIOD, "limit": 500})
    headers = {**tokens.headers("finance"), "Accept": "text/csv"}
    r = await app_client.get("/v1/finance/transactions", params=PERIOD, headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(r.text)))
    assert len(parsed) == len(whole) == 14
    for got, want in zip(parsed, whole, strict=True):
        assert got.keys() == {c for c in got}  # header names every column
        for column, value in got.items():
            expected = want[column]
            assert value == ("" if expected is None else str(expected)), column


async def test_transactions_csv_streams_many_pages(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    """More rows than one internal page (500): all arrive, once, in order."""
    async with AsyncSession(clean_engine) as db, db.begin():
        cash = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
        pend = await get_account_id(db, AccountRef.coach(7, Kind.PENDING, "usd"))
        await db.execute(
            text(
                "SELECT ledger_post('session_payment', 'bulk:' || g, :at + g * interval '1 second',"
                " jsonb_build_array(jsonb_build_object('account_id', :c, 'amount', 100 + g,"
                " 'currency', 'usd'), jsonb_build_object('account_id', :p, 'amount', -100 - g,"
                " 'currency', 'usd')), jsonb_build_object('coach_id', 7))"
                " FROM generate_series(1, 1203) g"
            ),
            {"at": day(1), "c": cash, "p": pend},
        )
    headers = {**tokens.headers("finance"), "Accept": "text/csv"}
    r = await app_client.get("/v1/finance/transactions", params={"coach_id": 7}, headers=headers)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(x["amount"]) for x in rows] == [100 + g for g in range(1, 1204)]


async def test_trial_balance(app_client: Client, tokens: Tokens, seeded: Any) -> None:
    r = await app_client.get(
        "/v1/finance/trial-balance", params={"verify": "true"}, headers=tokens.headers("finance")
    )
    body = r.json()
    assert body["balanced"] is True
    assert {c: t["sum"] for c, t in body["totals"].items()} == {"jpy": 0, "kwd": 0, "usd": 0}
    cash = next(a for a in body["accounts"] if a["account"] == "platform/stripe_balance/usd")
    assert (cash["balance"], cash["debit"], cash["balance_display"]) == (2888, 2888, "28.88 USD")
    headers = {**tokens.headers("finance"), "Accept": "text/csv"}
    r = await app_client.get("/v1/finance/trial-balance", headers=headers)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(body["accounts"])
    assert sum(int(x["balance"]) for x in rows) == 0


def _bt(id: str, amount: int, fee: int, type: str, source: str, cur: str = "usd") -> dict[str, Any]:
    return {"id": id, "object": "balance_transaction", "amount": amount, "fee": fee,
            "net": amount - fee, "currency": cur, "type": type, "source": source,
            "status": "available", "available_on": 0, "created": 1930000000,
            "reporting_category": type}  # fmt: skip


async def test_reconciliation_against_stripe(
    app_client: Client, tokens: Tokens, seeded: Any, stripe_mock: respx.MockRouter
) -> None:
    data = [
        _bt("txn_A", 10000, 320, "charge", "ch_A"),
        _bt("txn_B", 5000, 176, "charge", "ch_B"),  # one cent more than the ledger
        _bt("txn_Br", -2000, 0, "refund", "re_B"),
        _bt("txn_C", 3000, 117, "charge", "ch_C"),
        _bt("txn_Cd", -3000, 1500, "adjustment", "du_C"),
        _bt("txn_tr1", -8000, 0, "transfer", "tr_1"),
        _bt("txn_D", 5000, 180, "charge", "ch_D", "jpy"),
        _bt("txn_X", 900, 56, "charge", "ch_X"),  # unknown to the ledger
    ]
    route = stripe_mock.get("/v1/balance_transactions").respond(
        json={"object": "list", "data": data, "has_more": False, "url": "/v1/balance_transactions"}
    )
    r = await app_client.get(
        "/v1/finance/reconciliation", params=PERIOD, headers=tokens.headers("finance")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert route.called
    assert "created[gte]" in str(route.calls[0].request.url)
    assert body["ok"] is False
    assert body["counts"] == {
        "matched": 6, "amount_mismatches": 1, "missing_in_ledger": 1, "missing_at_stripe": 1,
    }  # fmt: skip
    (diff,) = body["amount_mismatches"]
    assert (diff["key"], diff["difference"], diff["difference_display"]) == ("ch_B", 1, "0.01 USD")
    assert body["missing_in_ledger"][0]["balance_transaction"] == "txn_X"
    assert body["missing_at_stripe"][0]["ledger_transaction_id"] == seeded["K"]
    headers = {**tokens.headers("finance"), "Accept": "text/csv"}
    r = await app_client.get("/v1/finance/reconciliation", params=PERIOD, headers=headers)
    results = [row["result"] for row in csv.DictReader(io.StringIO(r.text))]
    assert sorted(results) == sorted(["matched"] * 6 + ["amount_mismatches",
                                      "missing_in_ledger", "missing_at_stripe"])  # fmt: skip


async def test_payouts_view(
    app_client: Client, tokens: Tokens, seeded: Any, clean_engine: AsyncEngine
) -> None:
    async with AsyncSession(clean_engine) as db, db.begin():
        await db.execute(
            text(
                "INSERT INTO payouts (id, coach_id, currency, amount, status, destination,"
                " stripe_transfer_id, settled_at) VALUES (1, 1, 'usd', 8000, 'paid', 'acct_1',"
                " 'tr_1', :at), (2, 2, 'jpy', 4000, 'waiting_funds', 'acct_2', NULL, NULL)"
            ),
            {"at": day(11)},
        )
        await db.execute(
            text(
                "INSERT INTO earnings (coach_id, booking_id, currency, gross, platform_fee, amount,"
                " available_at, status, payout_id) VALUES (1, 1, 'usd', 10000, 2000, 8000, :at,"
                " 'paid', 1)"
            ),
            {"at": day(10)},
        )
    f = tokens.headers("finance")
    body = (await app_client.get("/v1/finance/payouts", headers=f)).json()
    assert [p["id"] for p in body["data"]] == [2, 1]
    paid = body["data"][1]
    assert (paid["state"], paid["transfer"], paid["amount_display"]) == (
        "paid",
        "tr_1",
        "80.00 USD",
    )
    assert [e["amount"] for e in paid["earnings"]] == [8000]
    waiting = (await app_client.get("/v1/finance/payouts", params={"state": "waiting_funds"},
                                    headers=f)).json()["data"]  # fmt: skip
    assert [(p["id"], p["amount_display"]) for p in waiting] == [(2, "4000 JPY")]
    assert (await app_client.get("/v1/finance/payouts", params={"state": "lost"},
                                 headers=f)).status_code == 422  # fmt: skip
    coach1 = await app_client.get("/v1/finance/payouts", params={"coach_id": 1}, headers=f)
    assert [p["id"] for p in coach1.json()["data"]] == [1]
