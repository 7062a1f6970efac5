"""``GET /v1/finance/refunds/attention`` end to end: a refund the card network returns
is listed for finance until an admin's new refund goes through.

Same module setup as tests/api/test_bookings_http.py (one app, one emulator, one clock).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from tests.api.bookings_support import (
    Client,
    Headers,
    Stripe,
    booking_row,
    mentee,
    paid_booking,
    publish,
    snapshot,
)
from tests.api.conftest import Tokens
from tests.api.test_bookings_http import (  # module fixtures, shared setup
    client,
    coach,
    emulator,
    engine,
    settings,
    stripe,
    tokens,
)
from tests.api.test_bookings_http import clock as clock

__all__ = ["client", "coach", "emulator", "engine", "settings", "stripe", "tokens"]
URL = "/v1/finance/refunds/attention"


async def _items(client: Client, tokens: Tokens, **params: Any) -> list[dict[str, Any]]:
    r = await client.get(URL, params=params, headers=tokens.headers("finance"))
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def test_a_returned_refund_is_listed_until_an_admin_refunds_again(
    client: Client, stripe: Stripe, coach: Headers, tokens: Tokens, clock: FrozenClock
) -> None:
    me = mentee(tokens)
    paid = await paid_booking(client, stripe, (await publish(client, coach, clock))["id"], me)
    url = f"/v1/bookings/{paid['id']}/refund"
    r = await client.post(url, json={"amount": 4000, "reason": "ran late"}, headers=coach)
    assert r.status_code == 201, r.text
    refund = r.json()
    await stripe.flush()
    ours = [i for i in await _items(client, tokens) if i["booking_id"] == paid["id"]]
    assert ours == []
    stripe.emulator.control("POST", f"refunds/{refund['stripe_refund_id']}/fail")
    assert "refund.failed" in await stripe.flush()
    assert (await booking_row(client, paid["id"], me))["amount_refunded"] == 0
    [item] = [i for i in await _items(client, tokens) if i["booking_id"] == paid["id"]]
    assert (item["kind"], item["amount"], item["refund_id"]) == (
        "refund_failed",
        4000,
        refund["id"],
    )
    assert (item["paid"], item["amount_refunded"], item["detail"]) == (10000, 0, "ran late")
    assert item["retried_automatically"] is False
    page = await client.get("/finance", headers=tokens.headers("finance"))
    assert page.status_code == 200
    assert f'data-testid="attention-{paid["id"]}"' in page.text and "40.00 USD" in page.text
    # An admin makes it good: a new refund at Stripe, and the item is gone.
    r = await client.post(url, json={"amount": 4000}, headers=tokens.headers("admin"))
    assert r.status_code == 201, r.text
    await stripe.flush()
    assert [i for i in await _items(client, tokens) if i["booking_id"] == paid["id"]] == []
    page = await client.get("/finance", headers=tokens.headers("finance"))
    assert f'data-testid="attention-{paid["id"]}"' not in page.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "²"}, "limit"),  # a digit to str.isdigit(), not to int()
        ({"limit": "9" * 20}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "MjAyNi0xMS0yMlQxMDowMDowMHxyMQ"}, "cursor"),  # naive time
        ({"cursor": "MjAyNi0xMS0yMlQxMDowMDowMCswMDowMHwnOyBEUk9Q"}, "cursor"),  # bad tag
    ],
)
async def test_bad_input_is_422_and_writes_nothing(
    client: Client,
    stripe: Stripe,
    tokens: Tokens,
    engine: AsyncEngine,
    params: dict[str, str],
    field: str,
) -> None:
    before = await snapshot(engine, stripe)
    r = await client.get(URL, params=params, headers=tokens.headers("admin"))
    assert r.status_code == 422, (params, r.text)
    assert r.json()["error"] and field in r.json()["detail"]
    assert await snapshot(engine, stripe) == before


async def test_oversized_query_values_are_refused(client: Client, tokens: Tokens) -> None:
    for params in ({"cursor": "x" * 201}, {"limit": "1" * 21}):
        r = await client.get(URL, params=params, headers=tokens.headers("finance"))
        assert r.status_code in (400, 422), (params, r.text)
