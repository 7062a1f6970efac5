"""Fixtures for API tests: an app over the committing test database, tokens per role.

See tests/api/README.md. ``app_client`` truncates the database first (via
``clean_engine``), so a test may inspect what the app committed with
``clean_engine``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.auth import mint_token
from api.runtime import Runtime, build_registry
from core.clock import FrozenClock
from core.inbox import HandlerRegistry
from core.settings import Settings, load_settings
from core.stripe_webhooks import sign_payload
from core.users import Role

STRIPE_TEST_BASE = "https://stripe.test"
TEST_JWT_SECRET = "test-jwt-secret-0123456789-abcdefghijklmnop"
PLATFORM_SECRET = "whsec_test_platform"
# What a browser on our own pages sends (api_settings.public_url's origin).
SAME_ORIGIN = {"Origin": "http://testserver.local"}
CONNECT_SECRET = "whsec_test_connect"


@pytest.fixture(scope="session")
def api_settings(commit_db_url: str) -> Settings:
    """Settings for the test app: the committing test DB, Stripe at a respx-mockable base."""
    return load_settings(
        database_url=commit_db_url,
        stripe_secret_key="sk_test_coachpay",
        stripe_api_base=STRIPE_TEST_BASE,
        stripe_max_retries=0,
        stripe_timeout_seconds=2,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://testserver.local",
        run_jobs=False,
        db_pool_size=5,
    )


@pytest.fixture
def api_clock() -> FrozenClock:
    """The app's clock: starts at the real now (tokens and webhook signatures use real time)."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def handler_registry() -> HandlerRegistry:
    """The real webhook handlers of every package; tests may ``register`` more."""
    return build_registry()


@pytest.fixture(scope="module")
def extra_routes() -> Sequence[ControllerRouterHandler]:
    """Override in a test module to mount test-only routes on the app."""
    return ()


@pytest.fixture
def webhook_processing() -> str:
    """'inline' so effects are visible when the response arrives; override per module."""
    return "inline"


@pytest.fixture
async def app_runtime(
    api_settings: Settings,
    api_clock: FrozenClock,
    handler_registry: HandlerRegistry,
    webhook_processing: str,
    clean_engine: AsyncEngine,
) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        api_settings,
        clock=api_clock,
        registry=handler_registry,
        webhook_processing=webhook_processing,
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
def app(
    api_settings: Settings, app_runtime: Runtime, extra_routes: Sequence[ControllerRouterHandler]
) -> Litestar:
    return create_app(api_settings, runtime=app_runtime, extra_route_handlers=extra_routes)


@pytest.fixture
async def app_client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        yield client


@pytest.fixture(scope="module")
async def shared_app_client(
    api_settings: Settings, extra_routes: Sequence[ControllerRouterHandler]
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """One app for a whole module, on the committing DB WITHOUT truncation: for tests
    that do not count rows (error shapes, validation, auth failures). Faster than
    ``app_client``; real handlers, SystemClock, inline webhook processing."""
    runtime = Runtime(api_settings, webhook_processing="inline")
    app = create_app(
        api_settings, runtime=runtime, stop_runtime=True, extra_route_handlers=extra_routes
    )
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        yield client


@pytest.fixture
def stripe_mock() -> Iterator[respx.MockRouter]:
    """respx router for the gateway's base URL; unmatched requests fail the call."""
    with respx.mock(base_url=STRIPE_TEST_BASE, assert_all_called=False) as router:
        yield router


@dataclass(frozen=True)
class Tokens:
    settings: Settings

    def token(self, role: Role | str, sub: str | None = None, **kw: Any) -> str:
        return mint_token(self.settings, sub or f"{role}-1", role, **kw)

    def headers(self, role: Role | str, sub: str | None = None, **kw: Any) -> dict[str, str]:
        """``{"Authorization": "Bearer ..."}`` for ``sub`` (default ``"<role>-1"``)."""
        return {"Authorization": f"Bearer {self.token(role, sub, **kw)}"}

    def expired(self, role: Role | str, sub: str | None = None) -> str:
        past = datetime.now(UTC) - timedelta(hours=2)
        return self.token(role, sub, ttl=timedelta(minutes=5), now=past)


@pytest.fixture
def tokens(api_settings: Settings) -> Tokens:
    return Tokens(api_settings)


@dataclass(frozen=True)
class StripeSigner:
    """Builds signed webhook deliveries as Stripe would send them."""

    platform_secret: str = PLATFORM_SECRET
    connect_secret: str = CONNECT_SECRET

    def event(
        self,
        type: str,
        obj: dict[str, Any],
        *,
        id: str | None = None,
        account: str | None = None,
        previous_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": obj}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event: dict[str, Any] = {
            "id": id or f"evt_{time.time_ns()}",
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": type,
            "data": data,
        }
        if account:
            event["account"] = account
        return event

    def headers(
        self, body: bytes, *, connect: bool = False, timestamp: int | None = None
    ) -> dict[str, str]:
        secret = self.connect_secret if connect else self.platform_secret
        return {
            "Stripe-Signature": sign_payload(body, secret, timestamp),
            "Content-Type": "application/json",
        }

    def delivery(self, event: dict[str, Any], *, connect: bool = False) -> dict[str, Any]:
        """kwargs for ``client.post(url, **delivery)``."""
        body = json.dumps(event).encode()
        return {"content": body, "headers": self.headers(body, connect=connect)}


@pytest.fixture
def stripe_signer() -> StripeSigner:
    return StripeSigner()
