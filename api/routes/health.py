"""``GET /health`` (liveness: is the database answering, can Stripe be reached) and
``GET /health/ready`` (readiness: may this instance take traffic now)."""

from __future__ import annotations

import asyncio
import logging
import time

from litestar import Response, Router, get
from litestar.datastructures import State
from sqlalchemy import text

from api.context import AppContext
from api.deps import AppCtx
from core.stripe_gateway import StripeGateway
from migrations.runner import head_revision

log = logging.getLogger(__name__)
DB_TIMEOUT_SECONDS = 3.0
STRIPE_TIMEOUT_SECONDS = 3.0
STRIPE_CACHE_SECONDS = 10.0


class StripeProbe:
    """A cheap balance retrieve, its answer cached so /health can be polled hard."""

    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway
        self._checked_at = -1e9
        self._ok = False
        self._lock = asyncio.Lock()

    async def reachable(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at < STRIPE_CACHE_SECONDS:
                return self._ok
            try:
                await asyncio.wait_for(self._gateway.retrieve_balance(), STRIPE_TIMEOUT_SECONDS)
                self._ok = True
            except Exception as exc:  # any failure means "not reachable now"
                log.warning("Stripe health probe failed: %s: %s", type(exc).__name__, exc)
                self._ok = False
            self._checked_at = time.monotonic()
            return self._ok


async def _database_ok(ctx: AppContext) -> bool:
    async def ping() -> None:
        async with ctx.factory() as session:
            await session.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), DB_TIMEOUT_SECONDS)
        return True
    except Exception as exc:
        log.warning("database health check failed: %s: %s", type(exc).__name__, exc)
        return False


@get("/health")
async def health(ctx: AppCtx, state: State) -> Response[dict[str, str]]:
    probe = state.get("stripe_probe")
    if not isinstance(probe, StripeProbe):
        probe = StripeProbe(ctx.probe_gateway or ctx.gateway)
        state["stripe_probe"] = probe
    database_ok, stripe_ok = await asyncio.gather(_database_ok(ctx), probe.reachable())
    body = {
        "status": "ok" if database_ok else "degraded",
        "database": "ok" if database_ok else "unavailable",
        "stripe": "ok" if stripe_ok else "unreachable",
    }
    # Only the database decides: without it nothing works; without Stripe
    # reads and the webhook inbox still do.
    return Response(body, status_code=200 if database_ok else 503)


_REVISION = text("SELECT version_num FROM alembic_version")


async def _schema_problem(ctx: AppContext) -> str | None:
    """None when the database is at the migrations' head, else what is wrong."""

    async def read() -> str | None:
        async with ctx.factory() as session:
            return (await session.execute(_REVISION)).scalar_one_or_none()

    try:
        revision = await asyncio.wait_for(read(), DB_TIMEOUT_SECONDS)
    except Exception as exc:  # no alembic_version (never migrated) lands here too
        log.warning("readiness: database check failed: %s: %s", type(exc).__name__, exc)
        return "unavailable or not migrated"
    head = head_revision()
    if revision != head:
        return f"at revision {revision or 'none'}, needs {head} (run `coachpay db upgrade`)"
    return None


@get("/health/ready")
async def ready(ctx: AppCtx, state: State) -> Response[dict[str, object]]:
    """200 once the schema is at head and nothing holds the instance back (the demo's
    seed while it runs); 503 with what is not ready otherwise."""
    runtime = state.get("runtime")
    waiting: dict[str, str] = dict(getattr(runtime, "not_ready", {}))
    problem = await _schema_problem(ctx)
    if problem is not None:
        waiting["database"] = problem
    if waiting:
        # The API's error shape (error, detail) as well, so clients and /schema agree.
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(waiting.items()))
        body = {"error": "NotReady", "detail": detail, "status": "not ready"}
        return Response({**body, "waiting_for": waiting}, status_code=503)
    return Response({"status": "ready"}, status_code=200)


router = Router(path="/", route_handlers=[health, ready])
