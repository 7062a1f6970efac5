"""The role matrix again, every caller signed in with the identity provider's tokens
(RS256 against a JWKS served on 127.0.0.1), over a world seeded with them: coaches
onboard, publish, mentees book and pay through the emulator, payouts run. The
world's seeding is the end-to-end booking with provider tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from core.users import Role
from tests.api.conftest import Tokens
from tests.api.oidc_support import ISSUER, Provider, oidc_settings, serve
from tests.system.conftest import World
from tests.system.test_role_matrix import (  # noqa: F401 (collected here with provider tokens)
    test_bookings_list_shows_only_the_callers_own,
    test_cell,
    test_table_covers_every_route,
)

_PROVIDER = Provider()
_PROVIDER.add_key("k1")


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with serve(_PROVIDER):
        yield _PROVIDER


@pytest.fixture(scope="module")
def identity_settings(provider: Provider) -> dict[str, Any]:
    return oidc_settings(provider)


@dataclass(frozen=True)
class ProviderTokens(Tokens):
    provider: Provider | None = None

    def token(self, role: Role | str, sub: str | None = None, **kw: Any) -> str:
        assert self.provider is not None
        return self.provider.token(sub or f"{role}-1", str(role))


@pytest.fixture(scope="module")
def world_tokens(system_settings: Any, provider: Provider) -> Tokens:
    return ProviderTokens(system_settings, provider)


async def test_the_world_was_built_with_provider_tokens(world: World) -> None:
    async with world.engine.connect() as conn:
        issuers = (await conn.execute(text("SELECT DISTINCT issuer FROM users"))).scalars().all()
        statuses = (await conn.execute(text("SELECT status FROM bookings"))).scalars().all()
        payouts = (await conn.execute(text("SELECT count(*) FROM payouts"))).scalar_one()
    assert list(issuers) == [ISSUER]
    # One booking per side was paid through the emulator (a later cell may refund it),
    # and its earning paid out to the coach.
    assert sum(s in ("paid", "refunded", "partially_refunded") for s in statuses) >= 2, statuses
    assert payouts >= 2
