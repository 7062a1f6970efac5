"""Everything a running coachpay needs, built from settings: database, Stripe, clock, handlers.

With no ``database_url`` an embedded PostgreSQL is started (and migrated);
with no Stripe key the in-process emulator is started and the gateway
points at it, with its webhooks pointing back at this app. The web app, the
worker and the CLI commands all use one Runtime, so they share one code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth import TokenVerifier
from api.context import AppContext
from core.clock import Clock, OffsetClock, SystemClock, load_simulated_offset
from core.db import create_engine, session_factory
from core.inbox import HandlerRegistry, drain
from core.inbox_receive import InboxReceiver
from core.rawpool import RawPool
from core.settings import Settings
from core.stripe_gateway import StripeGateway

log = logging.getLogger(__name__)
PROBE_TIMEOUT_SECONDS = 3.0


def build_registry() -> HandlerRegistry:
    """The webhook handlers of every domain package, in one registry."""
    from connect import webhooks as connect_webhooks
    from payouts import webhooks as payouts_webhooks
    from sessions import webhooks as sessions_webhooks

    registry = HandlerRegistry()
    connect_webhooks.register_handlers(registry)
    sessions_webhooks.register_handlers(registry)
    payouts_webhooks.register_handlers(registry)
    return registry


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


class Runtime:
    """Start once (``await start()``), hand ``context`` to the app, ``await stop()`` at the end.

    Tests inject ``clock``, ``gateway``, ``registry``; ``emulator_port=0``
    starts the emulator on a free port; ``webhook_processing`` is
    "background", "inline" or "off" (see AppContext; default: the setting
    ``COACHPAY_WEBHOOK_PROCESSING``). With "off" and ``jobs``, the inbox is
    drained continuously (``core.inbox.drain``), not only by the retry job.
    ``export_metrics``: serve /metrics on COACHPAY_METRICS_PORT when it is set
    (``serve`` and ``worker``; not one-off commands).

    With no ``clock`` and the Stripe emulator, the clock is the demo's simulated
    one when a demo stored it in this database (core.clock.OffsetClock).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        gateway: StripeGateway | None = None,
        registry: HandlerRegistry | None = None,
        emulator_port: int | None = None,
        webhook_processing: str | None = None,
        jobs: bool = False,
        export_metrics: bool = False,
    ) -> None:
        webhook_processing = webhook_processing or settings.webhook_processing
        if webhook_processing not in ("background", "inline", "off"):
            raise ValueError("webhook_processing: background, inline or off")
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._clock_given = clock is not None
        self.export_metrics = export_metrics
        self.metrics: Any = None  # api.metrics.MetricsSource, made on first scrape
        self.exporter: Any = None  # api.metrics.Exporter on COACHPAY_METRICS_PORT
        # What keeps /health/ready at 503 besides the schema: {"demo_seed": "running"}.
        self.not_ready: dict[str, str] = {}
        self._gateway = gateway
        self._owns_gateway = gateway is None
        self._registry = registry
        self._emulator_port = emulator_port
        self.webhook_processing = webhook_processing
        self.jobs = jobs
        self.emulator: Any = None  # emulator.server.EmulatorServer when we started one
        self.database_url: str | None = None
        self.stripe_api_base: str | None = None
        self.engine: AsyncEngine | None = None
        self.factory: async_sessionmaker[AsyncSession] | None = None
        self.probe_gateway: StripeGateway | None = None
        self._inbox: InboxReceiver | None = None
        self._reads: RawPool | None = None
        self.tokens = TokenVerifier(settings)
        self.scheduler: Any = None
        self._drain_stop = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self._started = False
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        async with self._lock:
            if self._started:
                return
            self.database_url = await self._database_url()
            self.engine = create_engine(self.database_url, pool_size=self.settings.db_pool_size)
            self.factory = session_factory(self.engine)
            # Webhook receipts: its own small pool, opened on the first delivery.
            self._inbox = InboxReceiver(
                self.database_url, connections=min(4, self.settings.db_pool_size)
            )
            self._reads = RawPool(
                self.database_url,
                name="coachpay-reads",
                connections=min(4, self.settings.db_pool_size),
            )
            self._start_stripe()
            await self._use_simulated_clock()
            if self._registry is None:
                self._registry = build_registry()
            self._started = True
            if self.jobs:
                from api.jobs import start_scheduler

                self.scheduler = start_scheduler(self)
                if self.webhook_processing == "off":
                    self._start_drain()
            if self.export_metrics and self.settings.metrics_port is not None:
                from api.metrics import start_exporter

                self.exporter = start_exporter(self, self.settings.host, self.settings.metrics_port)
            log.info(
                "runtime started",
                extra={
                    "embedded_db": self.settings.database_url is None,
                    "stripe": self.stripe_api_base or "api.stripe.com",
                    "emulator": self.emulator is not None,
                },
            )

    async def _use_simulated_clock(self) -> None:
        # Only with the emulator: a real Stripe account runs on real time, whatever
        # a demo once left in this database.
        if self._clock_given or not self.settings.uses_emulator or self.factory is None:
            return
        try:
            async with self.factory() as db:
                ahead_by = await asyncio.wait_for(load_simulated_offset(db), PROBE_TIMEOUT_SECONDS)
        except Exception as exc:  # not migrated yet, or away: wall time (readiness says why)
            log.debug("no simulated clock read: %s", type(exc).__name__)
            return
        if ahead_by is not None:
            self.clock = OffsetClock(ahead_by)
            now = f"{self.clock.now():%Y-%m-%d %H:%M}"
            log.info("simulated clock of the demo: now %s UTC", now)

    def _start_drain(self) -> None:
        ctx = self.context
        self._drain_stop.clear()
        self._drain_task = asyncio.create_task(
            drain(
                ctx.factory,
                ctx.registry,
                ctx.handler_context,
                stop=self._drain_stop,
                batch=min(self.settings.job_batch_size, 200),
                # Leave connections for the scheduler's jobs.
                concurrency=max(1, self.settings.db_pool_size // 2),
            )
        )

    async def _database_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        from core.embedded import embedded_database_url
        from migrations.runner import upgrade

        # Both block (a server start, alembic's own asyncio.run): threads.
        url = await asyncio.to_thread(embedded_database_url, self.settings.data_dir)
        await asyncio.to_thread(upgrade, url)
        log.info(
            "embedded PostgreSQL in %s (it outlives this process: `coachpay db stop`)",
            self.settings.data_dir / "pg",
        )
        return url

    def _start_stripe(self) -> None:
        settings = self.settings
        api_base = settings.stripe_api_base
        if settings.uses_emulator and api_base is None:
            api_base = self._start_emulator()
        self.stripe_api_base = api_base
        if self._gateway is None:
            self._gateway = StripeGateway.from_settings(settings, api_base=api_base)
        self.probe_gateway = StripeGateway.from_settings(
            settings, api_base=api_base, timeout=PROBE_TIMEOUT_SECONDS, max_retries=0
        )

    def _start_emulator(self) -> str:
        settings = self.settings
        port = settings.emulator_port if self._emulator_port is None else self._emulator_port
        if port and _port_in_use("127.0.0.1", port):
            # Another coachpay process (serve, worker) already runs it: share
            # its state instead of failing on the port.
            log.info("using the Stripe emulator already listening on port %s", port)
            return f"http://127.0.0.1:{port}"
        from emulator.server import EmulatorServer

        public = settings.public_url.rstrip("/")
        server = EmulatorServer(
            "127.0.0.1",
            port,
            platform_webhook_url=f"{public}/v1/webhooks/stripe",
            connect_webhook_url=f"{public}/v1/webhooks/stripe/connect",
            platform_secret=settings.stripe_webhook_secret.get_secret_value(),
            connect_secret=settings.stripe_connect_webhook_secret.get_secret_value(),
        )
        server.start()
        self.emulator = server
        log.info("Stripe emulator started at %s", server.base_url)
        return str(server.base_url)

    @property
    def inbox(self) -> InboxReceiver:
        """Stores verified webhook deliveries (group commit), see core.inbox_receive."""
        if self._inbox is None:
            raise RuntimeError("runtime not started")
        return self._inbox

    @property
    def reads(self) -> RawPool:
        """Plain-SQL reads on hot paths, see core.rawpool."""
        if self._reads is None:
            raise RuntimeError("runtime not started")
        return self._reads

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            raise RuntimeError("runtime not started")
        return self._gateway

    @property
    def registry(self) -> HandlerRegistry:
        if self._registry is None:
            self._registry = build_registry()
        return self._registry

    @property
    def context(self) -> AppContext:
        if not self._started or self.factory is None:
            raise RuntimeError("runtime not started")
        return AppContext(
            settings=self.settings,
            factory=self.factory,
            gateway=self.gateway,
            clock=self.clock,
            registry=self.registry,
            tokens=self.tokens,
            reads=self.reads,
            webhook_processing=self.webhook_processing,
            probe_gateway=self.probe_gateway,
        )

    async def stop(self) -> None:
        async with self._lock:
            if not self._started:
                return
            self._started = False
            if self.exporter is not None:
                self.exporter.stop()
                self.exporter = None
            if self._drain_task is not None:
                self._drain_stop.set()
                await self._drain_task
                self._drain_task = None
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
                self.scheduler = None
            if self._inbox is not None:
                await self._inbox.close()
                self._inbox = None
            if self._reads is not None:
                await self._reads.close()
                self._reads = None
            for gw in (self._gateway if self._owns_gateway else None, self.probe_gateway):
                if gw is not None:
                    # Pooled connections opened on another event loop (a test client's,
                    # or an app served on a loop that has ended) cannot be closed from
                    # this one; the process lets them go with that loop.
                    with contextlib.suppress(RuntimeError):
                        await gw.aclose()
            if self._owns_gateway:
                self._gateway = None
            if self.engine is not None:
                await self.engine.dispose()
                self.engine = None
            if self.emulator is not None:
                self.emulator.stop()
                self.emulator = None
