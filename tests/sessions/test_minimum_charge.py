"""A session priced below Stripe's minimum charge is refused at creation: every booking
of it would otherwise fail at Checkout (amount_too_small, a 502)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import FrozenClock
from core.money import CURRENCIES, MINIMUM_CHARGE, minimum_charge
from core.settings import Settings
from sessions.errors import InvalidSessionInput
from tests.sessions.helpers import make_coach, make_session


def test_every_currency_has_a_minimum() -> None:
    assert set(MINIMUM_CHARGE) == set(CURRENCIES)
    assert all(isinstance(v, int) and v > 0 for v in MINIMUM_CHARGE.values())
    # Stripe's documented figures.
    assert [minimum_charge(c) for c in ("usd", "eur", "gbp", "jpy", "huf", "mxn")] == [
        50, 50, 30, 50, 17500, 1000,
    ]  # fmt: skip
    # Three-decimal currencies: Stripe wants amounts that end in 0.
    assert all(MINIMUM_CHARGE[c] % 10 == 0 for c, e in CURRENCIES.items() if e == 3)


@pytest.mark.parametrize("currency", ["usd", "eur", "gbp", "jpy", "kwd", "huf"])
async def test_below_the_minimum_is_refused_at_the_minimum_accepted(
    db: AsyncSession, settings: Settings, clock: FrozenClock, currency: str
) -> None:
    coach = await make_coach(db, settings, clock.now())
    minimum = minimum_charge(currency)
    with pytest.raises(InvalidSessionInput) as exc:
        await make_session(db, coach, clock, price=minimum - 1, currency=currency)
    assert exc.value.field == "price" and "minimum" in exc.value.detail
    row = await make_session(db, coach, clock, price=minimum, currency=currency.upper())
    assert row.price == minimum and row.currency == currency
