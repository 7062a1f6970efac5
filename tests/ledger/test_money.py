from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidAmount, UnknownCurrency
from core.money import (
    Money,
    check_amount,
    currency_exponent,
    format_amount,
    platform_fee,
    refund_split,
    round_half_even_div,
    split,
)


@given(gross=st.integers(1, 10**9), bps=st.integers(0, 10_000))
def test_fee_plus_share_is_gross(gross: int, bps: int) -> None:
    s = split(gross, bps)
    assert s.platform_fee + s.coach_share == gross
    assert 0 <= s.platform_fee <= gross
    assert s.coach_share >= 0


@given(
    gross=st.integers(1, 10**9),
    bps=st.integers(0, 10_000),
    cuts=st.lists(st.floats(0, 1, allow_nan=False), max_size=12),
)
def test_partial_refunds_reverse_the_split_exactly(gross: int, bps: int, cuts: list[float]) -> None:
    # Refund amounts: the gross cut at arbitrary points, last piece is "the rest".
    points = sorted({int(gross * c) for c in cuts} | {0, gross})
    refunds = [b - a for a, b in itertools.pairwise(points) if b > a]
    original = split(gross, bps)
    done = fee_total = share_total = 0
    for r in refunds:
        part = refund_split(original_gross=gross, bps=bps, refunded_before=done, refund=r)
        assert part.platform_fee + part.coach_share == r
        assert part.platform_fee >= 0 and part.coach_share >= 0
        done += r
        fee_total += part.platform_fee
        share_total += part.coach_share
    assert done == gross
    assert fee_total == original.platform_fee
    assert share_total == original.coach_share


def test_half_even_rounding() -> None:
    assert round_half_even_div(5, 10) == 0
    assert round_half_even_div(15, 10) == 2
    assert round_half_even_div(25, 10) == 2
    assert round_half_even_div(26, 10) == 3
    # 2.5 cents of fee at 20 % of 12.5 -> gross 1250 * 2000 / 10000 = 250 exactly
    assert platform_fee(1250, 2000) == 250
    assert platform_fee(1, 5000) == 0  # 0.5 rounds to even 0
    assert platform_fee(3, 5000) == 2  # 1.5 rounds to even 2
    assert split(10000, 2000).coach_share == 8000


def test_refund_beyond_gross_is_rejected() -> None:
    with pytest.raises(InvalidAmount):
        refund_split(original_gross=100, bps=2000, refunded_before=90, refund=11)
    with pytest.raises(InvalidAmount):
        refund_split(original_gross=100, bps=2000, refunded_before=0, refund=0)


def test_fee_rate_bounds() -> None:
    with pytest.raises(InvalidAmount):
        platform_fee(100, 10_001)
    with pytest.raises(InvalidAmount):
        platform_fee(100, -1)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (12345, "usd", "123.45 USD"),
        (5, "usd", "0.05 USD"),
        (-5, "eur", "-0.05 EUR"),
        (12345, "jpy", "12345 JPY"),
        (12345, "kwd", "12.345 KWD"),
        (7, "kwd", "0.007 KWD"),
    ],
)
def test_format_uses_currency_decimals(amount: int, currency: str, shown: str) -> None:
    assert format_amount(amount, currency) == shown


@pytest.mark.parametrize("bad", ["USD", "xxx", "", "us", None, 1])
def test_unknown_currency_rejected(bad: object) -> None:
    with pytest.raises(UnknownCurrency):
        currency_exponent(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [1.5, "100", None, True, -1, 10**16])
def test_bad_amounts_rejected(bad: object) -> None:
    with pytest.raises(InvalidAmount):
        check_amount(bad)


def test_money_arithmetic_keeps_currency() -> None:
    assert Money(100, "usd") + Money(5, "usd") == Money(105, "usd")
    with pytest.raises(InvalidAmount):
        _ = Money(100, "usd") + Money(5, "eur")
    with pytest.raises(UnknownCurrency):
        Money(1, "zzz")
