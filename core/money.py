"""Money: integer minor units plus a lowercase ISO 4217 currency."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidAmount, UnknownCurrency

# Decimals per currency, used only for display. Stripe's zero-decimal and
# three-decimal lists; every other supported currency has two.
_ZERO = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
    "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip
_THREE = {"bhd", "jod", "kwd", "omr", "tnd"}
_TWO = {
    "aed", "aud", "brl", "cad", "chf", "cny", "czk", "dkk", "eur", "gbp",
    "hkd", "huf", "idr", "ils", "inr", "mxn", "myr", "nok", "nzd", "php",
    "pln", "ron", "sek", "sgd", "thb", "try", "twd", "usd", "zar",
}  # fmt: skip

CURRENCIES: dict[str, int] = {
    **{c: 0 for c in _ZERO},
    **{c: 2 for c in _TWO},
    **{c: 3 for c in _THREE},
}

MAX_AMOUNT = 10**15

# Stripe's minimum charge per currency, in minor units: a Checkout Session for
# less is refused (amount_too_small). The documented table
# (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts):
_STRIPE_DOCUMENTED_MINIMUM = {
    "usd": 50, "aed": 200, "aud": 50, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50,
    "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300,
    "sgd": 50, "thb": 1000,
}  # fmt: skip
# The other currencies Stripe charges in have no published figure: the charge must
# be worth US$0.50 at the day's rate. These are about US$1 (twice that, for rate
# moves), three-decimal ones a multiple of 10 as Stripe requires.
_ABOUT_ONE_DOLLAR = {
    "bif": 3000, "clp": 1000, "djf": 200, "gnf": 10000, "kmf": 500, "krw": 1500,
    "mga": 5000, "pyg": 8000, "rwf": 1500, "ugx": 4000, "vnd": 25000, "vuv": 150,
    "xaf": 700, "xof": 700, "xpf": 150,
    "bhd": 400, "jod": 710, "kwd": 310, "omr": 390, "tnd": 3100,
    "cny": 700, "idr": 1600000, "ils": 400, "php": 6000, "try": 4000, "twd": 3200,
    "zar": 2000,
}  # fmt: skip
MINIMUM_CHARGE: dict[str, int] = {**_ABOUT_ONE_DOLLAR, **_STRIPE_DOCUMENTED_MINIMUM}


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCIES[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(f"unknown currency {currency!r}") from None


def minimum_charge(currency: str) -> int:
    """The smallest amount Stripe charges in ``currency`` (minor units)."""
    currency_exponent(currency)
    return MINIMUM_CHARGE[currency]


def check_currency(currency: str) -> str:
    currency_exponent(currency)
    return currency


def check_amount(amount: object, *, allow_zero: bool = False, allow_negative: bool = False) -> int:
    # bool is an int subclass; True is not one cent.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidAmount(f"amount must be an integer number of minor units, got {amount!r}")
    if abs(amount) > MAX_AMOUNT:
        raise InvalidAmount("amount out of range")
    if amount < 0 and not allow_negative:
        raise InvalidAmount("amount must not be negative")
    if amount == 0 and not allow_zero:
        raise InvalidAmount("amount must not be zero")
    return amount


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        check_amount(self.amount, allow_zero=True, allow_negative=True)
        check_currency(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise InvalidAmount(f"currency mismatch: {self.currency} vs {other.currency}")

    def format(self) -> str:
        return format_amount(self.amount, self.currency)


def format_amount(amount: int, currency: str) -> str:
    """``12345, 'usd'`` -> ``'123.45 USD'``; exact, no floats."""
    exp = currency_exponent(currency)
    sign = "-" if amount < 0 else ""
    a = abs(amount)
    if exp == 0:
        return f"{sign}{a} {currency.upper()}"
    whole, frac = divmod(a, 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d} {currency.upper()}"


def round_half_even_div(numerator: int, denominator: int) -> int:
    """Integer division rounded half to even, for non-negative denominators."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def platform_fee(gross: int, bps: int) -> int:
    if not 0 <= bps <= 10_000:
        raise InvalidAmount("fee rate must be between 0 and 10000 basis points")
    return round_half_even_div(gross * bps, 10_000)


@dataclass(frozen=True, slots=True)
class Split:
    gross: int
    platform_fee: int
    coach_share: int


def split(gross: int, bps: int) -> Split:
    """Platform fee rounded half-even; the coach gets the rest, never rounded separately."""
    fee = platform_fee(gross, bps)
    return Split(gross, fee, gross - fee)


def refund_split(*, original_gross: int, bps: int, refunded_before: int, refund: int) -> Split:
    """Split one refund so that all refunds together reverse the original split exactly.

    The fee part of a refund is the fee on the cumulative refunded amount minus
    the fee on what was refunded before, so the parts never drift.
    """
    if refund <= 0 or refunded_before < 0 or refunded_before + refund > original_gross:
        raise InvalidAmount("refund out of range")
    fee_after = platform_fee(refunded_before + refund, bps)
    fee_before = platform_fee(refunded_before, bps)
    fee = fee_after - fee_before
    return Split(refund, fee, refund - fee)
