"""Stripe's money rules the emulator needs: currency exponents and processing fees."""

from __future__ import annotations

ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


def exponent(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def round_half_even_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even, in integers (no floats near money)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def processing_fee(amount: int, currency: str, *, bps: int = 290, fixed: int = 30) -> int:
    """Card fee: 2.9 % + 30 for two-decimal currencies.

    Zero-decimal currencies (JPY...) have no sensible "30 minor units", so they pay 3.6 % flat
    like Stripe Japan; three-decimal ones scale the fixed part (0.300).
    """
    exp = exponent(currency)
    if exp == 0:
        return round_half_even_div(amount * 360, 10_000)
    fixed_part = fixed * 10 ** (exp - 2)
    return round_half_even_div(amount * bps, 10_000) + fixed_part


def dispute_fee(currency: str, base: int = 1500) -> int:
    exp = exponent(currency)
    return base * 10 ** (exp - 2) if exp >= 2 else 2000
