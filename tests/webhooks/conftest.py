"""One app, one emulator and one clock per module, as tests/api/test_bookings_http.py.

The app is the real one (create_app over a Runtime with inline webhook
processing) and events reach it through the real webhook endpoints, signed
with the real secrets: what a forger holding the endpoint secret can send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.runtime import Runtime
from core.clock import FrozenClock
from core.db import create_engine
from core.settings import Settings, load_settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from tests.api.bookings_support import Client, Headers, Stripe, onboard_coach
from tests.api.conftest import (
    CONNECT_SECRET,
    PLATFORM_SECRET,
    TEST_JWT_SECRET,
    StripeSigner,
    Tokens,
)
from tests.conftest import truncate_all


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(seed=29).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def settings(commit_db_url: str, emulator: EmulatorServer) -> Settings:
    return load_settings(
        database_url=commit_db_url,
        stripe_secret_key="sk_test_forgery",
        stripe_api_base=emulator.base_url,
        stripe_max_retries=0,
        stripe_timeout_seconds=10,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://testserver.local",
        run_jobs=False,
        db_pool_size=5,
        platform_fee_bps=2000,
    )


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    # Real now: the emulator checks Checkout expiry against the real clock.
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
async def engine(commit_db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(commit_db_url, pool_size=6)  # the payout job takes several
    await truncate_all(eng)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="module")
async def gateway(settings: Settings) -> AsyncIterator[StripeGateway]:
    """The test's own way to Stripe (a dashboard user, say); the app has its own,
    in the test client's event loop."""
    gw = StripeGateway.from_settings(settings)
    yield gw
    await gw.aclose()


@pytest.fixture(scope="module")
async def client(
    settings: Settings, clock: FrozenClock, engine: AsyncEngine
) -> AsyncIterator[Client]:
    app_gateway = StripeGateway.from_settings(settings)
    runtime = Runtime(settings, clock=clock, gateway=app_gateway, webhook_processing="inline")
    app = create_app(settings, runtime=runtime, stop_runtime=True)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c
    with contextlib.suppress(RuntimeError):
        await app_gateway.aclose()


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings)


@pytest.fixture(scope="module")
def stripe(emulator: EmulatorServer, client: Client) -> Stripe:
    return Stripe(emulator, client, StripeSigner())


@pytest.fixture(scope="module")
async def coach(client: Client, stripe: Stripe, tokens: Tokens) -> Headers:
    return await onboard_coach(client, stripe, tokens)
