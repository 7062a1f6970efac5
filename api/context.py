"""What a request handler may need besides the request: one object, built by the runtime."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.inbox import HandlerContext, HandlerRegistry
from core.settings import Settings
from core.stripe_gateway import StripeGateway


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    factory: async_sessionmaker[AsyncSession]
    gateway: StripeGateway
    clock: Clock
    registry: HandlerRegistry
    # "background": webhooks are processed right after the response;
    # "inline": before it (tests that assert effects); "off": only by the
    # retry job or an explicit process_event call (tests of the inbox).
    webhook_processing: str = "background"
    # A gateway with a short timeout and no retries, for /health.
    probe_gateway: StripeGateway | None = None

    @property
    def handler_context(self) -> HandlerContext:
        return HandlerContext(gateway=self.gateway, clock=self.clock, settings=self.settings)
