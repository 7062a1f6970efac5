"""Sessions tests: a real PostgreSQL (rolled back) and the in-process Stripe emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from core.clock import FrozenClock
from core.inbox import HandlerContext
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    # No webhook URL: events are stored and the tests hand them to the handlers.
    server = EmulatorServer(seed=11).start()
    yield server
    server.stop()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        database_url="postgresql://unused",
        stripe_secret_key="sk_test_sessions",
        public_url="https://coachpay.test",
        platform_fee_bps=2000,
        hold_hours=72,
    )


@pytest.fixture
def clock() -> FrozenClock:
    # Real time: the emulator checks Checkout expiry against its own (real) clock.
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def gateway(emulator: EmulatorServer) -> AsyncIterator[StripeGateway]:
    gw = StripeGateway("sk_test_sessions", api_base=emulator.base_url, max_retries=0, timeout=10)
    yield gw
    await gw.aclose()


@pytest.fixture
def ctx(gateway: StripeGateway, clock: FrozenClock, settings: Settings) -> HandlerContext:
    return HandlerContext(gateway=gateway, clock=clock, settings=settings)


@pytest.fixture(scope="module")
def own_emulator() -> Iterator[EmulatorServer]:
    """A module's private emulator, for tests with real commits (``clean_engine``):
    the truncated database restarts ids at 1, and Stripe must not answer an
    idempotency key derived from them with another test's object."""
    server = EmulatorServer(seed=23).start()
    yield server
    server.stop()


@pytest.fixture
async def race_ctx(
    own_emulator: EmulatorServer, clock: FrozenClock, settings: Settings
) -> AsyncIterator[HandlerContext]:
    own_emulator.control("POST", "reset")
    gw = StripeGateway("sk_test_race", api_base=own_emulator.base_url, max_retries=0, timeout=10)
    yield HandlerContext(gateway=gw, clock=clock, settings=settings)
    await gw.aclose()
