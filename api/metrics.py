"""``GET /metrics`` (Prometheus text format) and the HTTP request metrics.

Two kinds of numbers. Process-local ones (HTTP requests here, Stripe calls in
core.metrics, the connection pool) are plain prometheus-client metrics: each
replica reports its own, Prometheus sums them. Counts that live in the
database (the inbox by status and its backlog, payouts by state, each job's
last success) are read at scrape time, one query each, so every replica and
process reports the same truth (aggregate them with ``max``, not ``sum``).

Who may read it: a bearer token equal to COACHPAY_METRICS_TOKEN, or the admin
role. Outside production with no token configured, an app bound to loopback
answers loopback clients without a credential (the demo). With
COACHPAY_METRICS_PORT set, ``serve`` and ``worker`` also serve it without a
credential on that port of COACHPAY_HOST (a port the network keeps private).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import Scope
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import text

from api.auth import aclaims_of, current_user_of
from core.errors import Forbidden
from core.inbox_models import OWED

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "coachpay_http_requests",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "coachpay_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
)
# The webhook fast path (api/routes/webhooks.py) answers before Litestar routes, so
# these two exact paths carry no template; every other unrouted path is one label.
FAST_PATHS = frozenset({"/v1/webhooks/stripe", "/v1/webhooks/stripe/connect"})
UNMATCHED = "unmatched"
# A scrape burst (several Prometheus servers, a person reloading) reads the
# database once per this many seconds.
SNAPSHOT_TTL_SECONDS = 5.0
QUERY_TIMEOUT_MS = 2000
THREAD_SCRAPE_TIMEOUT_SECONDS = 5.0


def route_label(scope: Scope, status: int) -> str:
    template = scope.get("path_template")  # set by Litestar's router once matched
    if isinstance(template, str):
        return template
    path = scope.get("path", "")
    return path if path in FAST_PATHS and status != 404 else UNMATCHED


def observe_http(scope: Scope, status: int, seconds: float) -> None:
    method = str(scope.get("method", ""))
    route = route_label(scope, status)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


@dataclass
class Snapshot:
    """What the database says at one scrape."""

    webhook_events: dict[str, int] = field(default_factory=dict)
    backlog: int = 0
    oldest_owed_age: float = 0.0
    payouts: list[tuple[str, str, int, int]] = field(default_factory=list)
    job_success: dict[str, float] = field(default_factory=dict)
    up: bool = True


# GROUP BY status, not a list of statuses: a status added later (parked) is
# counted the day it exists. These two scan their tables: fine at the sizes
# this serves (see the README's known limits), cached SNAPSHOT_TTL_SECONDS.
_EVENTS = text("SELECT status, count(*) FROM webhook_events GROUP BY status")
# The retry job's partial index (ix_webhook_events_due) covers exactly these rows.
_BACKLOG = text(f"SELECT count(*), min(received_at) FROM webhook_events WHERE {OWED}")
_PAYOUTS = text(
    "SELECT status, currency, count(*), coalesce(sum(amount), 0)"
    " FROM payouts GROUP BY status, currency"
)
_JOBS = text("SELECT job_id, extract(epoch FROM last_success_at) FROM job_runs")


class MetricsSource(Collector):
    """The metrics of one runtime: the process's own and a cached database snapshot."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._snapshot = Snapshot(up=False)
        self._read_at = -math.inf
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < SNAPSHOT_TTL_SECONDS:
                return
            try:
                self._snapshot = await self._read()
            except Exception as exc:  # the scrape still answers, saying the database is away
                log.warning("metrics: database read failed: %s: %s", type(exc).__name__, exc)
                self._snapshot = Snapshot(up=False)
            self._read_at = time.monotonic()

    async def _read(self) -> Snapshot:
        ctx = self._runtime.context
        snap = Snapshot()
        async with ctx.factory() as db, db.begin():
            await db.execute(text(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}"))
            rows = (await db.execute(_EVENTS)).all()
            snap.webhook_events = {str(status): int(n) for status, n in rows}
            count, oldest = (await db.execute(_BACKLOG)).one()
            snap.backlog = int(count)
            if isinstance(oldest, datetime):
                # received_at is stamped by the app's clock (simulated in the demo).
                snap.oldest_owed_age = max(0.0, (ctx.clock.now() - oldest).total_seconds())
            snap.payouts = [
                (str(s), str(c), int(n), int(a)) for s, c, n, a in (await db.execute(_PAYOUTS))
            ]
            snap.job_success = {str(j): float(t) for j, t in await db.execute(_JOBS)}
        return snap

    def collect(self) -> Iterator[Metric]:
        """The process's metrics, then the snapshot's (prometheus-client's collector API)."""
        yield from REGISTRY.collect()
        yield from self._pool()
        yield from _families(self._snapshot)

    def _pool(self) -> Iterable[Metric]:
        engine = self._runtime.engine
        if engine is None:
            return
        pool: Any = engine.sync_engine.pool
        in_use = GaugeMetricFamily(
            "coachpay_db_pool_in_use", "Database connections checked out of this process's pool."
        )
        in_use.add_metric([], float(pool.checkedout()))
        size = GaugeMetricFamily(
            "coachpay_db_pool_capacity", "Connections this process's pool may open (with overflow)."
        )
        size.add_metric([], float(pool.size() + getattr(pool, "_max_overflow", 0)))
        yield in_use
        yield size

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self)


def _families(snap: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily("coachpay_metrics_database_up", "1 if the last database read worked.")
    up.add_metric([], 1.0 if snap.up else 0.0)
    yield up
    if not snap.up:
        return
    events = GaugeMetricFamily(
        "coachpay_webhook_events",
        "Stripe events in the inbox by status (received: their sum).",
        labels=["status"],
    )
    for status, n in sorted(snap.webhook_events.items()):
        events.add_metric([status], float(n))
    yield events
    backlog = GaugeMetricFamily("coachpay_inbox_backlog", "Stripe events still owed processing.")
    backlog.add_metric([], float(snap.backlog))
    yield backlog
    age = GaugeMetricFamily(
        "coachpay_inbox_oldest_unprocessed_age_seconds",
        "Age of the oldest Stripe event still owed processing (0: none).",
    )
    age.add_metric([], snap.oldest_owed_age)
    yield age
    count = GaugeMetricFamily(
        "coachpay_payouts", "Payouts by state and currency.", labels=["status", "currency"]
    )
    amount = GaugeMetricFamily(
        "coachpay_payouts_amount_minor_units",
        "Sum of payout amounts by state and currency, in minor units.",
        labels=["status", "currency"],
    )
    for status, currency, n, total in snap.payouts:
        count.add_metric([status, currency], float(n))
        amount.add_metric([status, currency], float(total))
    yield count
    yield amount
    jobs = GaugeMetricFamily(
        "coachpay_job_last_success_timestamp_seconds",
        "When each scheduled job last succeeded in any worker (Unix time).",
        labels=["job"],
    )
    for job, at in sorted(snap.job_success.items()):
        jobs.add_metric([job], at)
    yield jobs


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, value = (connection.headers.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def metrics_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """The metrics token, or the admin role (401 without a credential, 403 for another
    role); no credential needed on a loopback-only development app."""
    ctx = connection.app.state["ctx"]
    settings = ctx.settings
    token = settings.metrics_token
    if token is None and settings.env != "production":
        client = connection.client.host if connection.client else None
        if _loopback(settings.host) and _loopback(client):
            return
    given = _bearer(connection)
    secret = token.get_secret_value().encode() if token is not None else None
    if secret is not None and given is not None and hmac.compare_digest(given.encode(), secret):
        return
    if (await aclaims_of(connection, ctx)).role != "admin":
        raise Forbidden("this needs the metrics token or the role admin")
    await current_user_of(connection, ctx)  # the stored role must agree


def source_of(runtime: Runtime) -> MetricsSource:
    if runtime.metrics is None:
        runtime.metrics = MetricsSource(runtime)
    metrics: MetricsSource = runtime.metrics
    return metrics


@get("/metrics", guards=[metrics_guard], include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await source_of(request.app.state["runtime"]).render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


router = Router(path="/", route_handlers=[metrics_endpoint])


class _ThreadView(Collector):
    """The exporter thread's view of a source: refreshes on the runtime's loop."""

    def __init__(self, source: MetricsSource, loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._source.refresh(), self._loop)
        try:
            future.result(THREAD_SCRAPE_TIMEOUT_SECONDS)
        except Exception as exc:
            future.cancel()
            log.warning("metrics: refresh failed: %s", type(exc).__name__)
        return self._source.collect()

    def restricted_registry(self, names: Iterable[str]) -> _ThreadView:
        return self  # ``?name[]=`` filters nothing here: everything is served


@dataclass
class Exporter:
    """``/metrics`` on its own port (prometheus-client's server, in a thread)."""

    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_exporter(runtime: Runtime, host: str, port: int) -> Exporter:
    from prometheus_client import start_http_server

    view = _ThreadView(source_of(runtime), asyncio.get_running_loop())
    server, thread = start_http_server(port, addr=host, registry=view)
    log.info("metrics served on http://%s:%s/metrics", host, port)
    return Exporter(server, thread)
