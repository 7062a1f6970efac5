"""Unit tests of the wire-format parser and the fee arithmetic."""

from __future__ import annotations

import pytest

from emulator.errors import StripeError
from emulator.forms import parse_form
from emulator.money import processing_fee, round_half_even_div


def test_bracket_notation_nests_dicts_and_lists() -> None:
    body = (
        "metadata[booking_id]=1&expand[]=a&expand[]=b"
        "&payment_intent_data[transfer_group]=g"
        "&line_items[0][price_data][unit_amount]=500&line_items[0][quantity]=2"
        "&line_items[1][price_data][unit_amount]=7&capabilities[transfers][requested]=true"
    )
    assert parse_form(body) == {
        "metadata": {"booking_id": "1"},
        "expand": ["a", "b"],
        "payment_intent_data": {"transfer_group": "g"},
        "line_items": [
            {"price_data": {"unit_amount": "500"}, "quantity": "2"},
            {"price_data": {"unit_amount": "7"}},
        ],
        "capabilities": {"transfers": {"requested": "true"}},
    }


def test_indexed_arrays_and_numeric_metadata_keys() -> None:
    assert parse_form("expand[0]=x&expand[1]=y") == {"expand": ["x", "y"]}
    # Metadata is user data: numeric keys stay keys.
    assert parse_form("metadata[0]=zero") == {"metadata": {"0": "zero"}}
    assert parse_form("email=&metadata[k]=") == {"email": "", "metadata": {"k": ""}}


def test_conflicting_shapes_are_refused() -> None:
    with pytest.raises(StripeError):
        parse_form("a=1&a[b]=2")


def test_round_half_even() -> None:
    assert round_half_even_div(25, 10) == 2
    assert round_half_even_div(35, 10) == 4
    assert round_half_even_div(26, 10) == 3
    assert round_half_even_div(24, 10) == 2


@pytest.mark.parametrize(
    ("amount", "currency", "fee"),
    [
        (10_000, "usd", 320),  # 290 + 30
        (5_000, "eur", 175),  # 145 + 30
        (1_750, "usd", 81),  # 50.75 -> 51, + 30
        (1_250, "usd", 66),  # 36.25 -> 36, + 30
        (10_000, "jpy", 360),  # zero-decimal: 3.6 %, no fixed part
        (10_000, "kwd", 590),  # three-decimal: 2.9 % + 0.300
    ],
)
def test_processing_fee(amount: int, currency: str, fee: int) -> None:
    assert processing_fee(amount, currency) == fee
