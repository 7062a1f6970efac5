"""What a request handler may need besides the request: one object, built by the runtime."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import TokenVerifier
from core.clock import Clock
from core.inbox import HandlerContext, HandlerRegistry
from core.rawpool import RawPool
from core.settings import Settings
from core.stripe_gateway import StripeGateway


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    factory: async_sessionmaker[AsyncSession]
    gateway: StripeGateway
    clock: Clock
    registry: HandlerRegistry
    tokens: TokenVerifier
    # Plain-SQL reads on hot paths (the coach balance); see core.rawpool.
    reads: RawPool
    # COACHPAY_WEBHOOK_PROCESSING: "background": webhooks are processed right
    # after the response; "inline": before it; "off": only stored here, the
    # jobs of `coachpay worker` process them (several web replicas, one backlog).
    webhook_processing: str = "background"
    # A gateway with a short timeout and no retries, for /health.
    probe_gateway: StripeGateway | None = None

    @property
    def handler_context(self) -> HandlerContext:
        return HandlerContext(gateway=self.gateway, clock=self.clock, settings=self.settings)
