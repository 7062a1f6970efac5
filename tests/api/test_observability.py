"""GET /metrics (who may read it, what it counts) and GET /health/ready."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.auth import AuthenticationFailed, TokenVerifier
from api.logs import formatter
from api.metrics import FAST_PATHS, _loopback, metrics_guard
from api.routes.webhooks import CONNECT_PATH, PLATFORM_PATH
from api.runtime import Runtime
from core.settings import Settings
from tests.api.conftest import Tokens

Client = AsyncTestClient[Litestar]
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def sample(body: str, name: str, **labels: str) -> float | None:
    return samples(body).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
async def token_client(api_settings: Settings, app_runtime: Runtime) -> AsyncIterator[Client]:
    settings = api_settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    app_runtime.settings = settings
    app = create_app(settings, runtime=app_runtime)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        yield client


async def test_metrics_need_a_credential(app_client: Client, tokens: Tokens) -> None:
    assert (await app_client.get("/metrics")).status_code == 401
    assert (await app_client.get("/metrics", headers=tokens.headers("coach"))).status_code == 403
    r = await app_client.get("/metrics", headers=tokens.headers("admin"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")


async def test_the_metrics_token_opens_them_and_a_wrong_one_does_not(
    token_client: Client,
) -> None:
    ok = await token_client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200
    wrong = await token_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "coachpay" not in wrong.text.replace("coachpay_", "")  # an error body, no metrics


def test_open_without_credential_only_on_loopback() -> None:
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert not _loopback("0.0.0.0") and not _loopback("10.0.0.5") and not _loopback(None)
    assert not _loopback("testclient")


def test_the_fast_paths_are_the_webhook_routes() -> None:
    assert {PLATFORM_PATH, CONNECT_PATH} == FAST_PATHS


async def test_http_requests_are_counted_by_route_template(
    app_client: Client, tokens: Tokens
) -> None:
    admin = tokens.headers("admin")
    before = (await app_client.get("/metrics", headers=admin)).text
    await app_client.get("/v1/sessions/12345", headers=admin)
    await app_client.get("/nothing/here/1")
    await app_client.get("/nothing/here/2")
    body = (await app_client.get("/metrics", headers=admin)).text
    route = {"method": "GET", "route": "/v1/sessions/{session_id}", "status": "404"}
    was = sample(before, "coachpay_http_requests_total", **route) or 0
    assert sample(body, "coachpay_http_requests_total", **route) == was + 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    was = sample(before, "coachpay_http_requests_total", **unmatched) or 0
    assert sample(body, "coachpay_http_requests_total", **unmatched) == was + 2
    assert all("/nothing" not in name + str(labels) for name, labels in samples(body))
    count = "coachpay_http_request_duration_seconds_count"
    assert (sample(body, count, method="GET", route="/v1/sessions/{session_id}") or 0) >= 1


async def _seed(engine: AsyncEngine, now: Any) -> None:
    async with engine.begin() as conn:
        for i, (status, age) in enumerate(
            [("pending", 120), ("failed", 30), ("processed", 5), ("processed", 1), ("ignored", 1)]
        ):
            await conn.execute(
                text(
                    "INSERT INTO webhook_events (stripe_event_id, endpoint, type, payload,"
                    " received_at, status, next_attempt_at) VALUES (:id, 'platform', 't',"
                    " '{}', :at, :status, :due)"
                ),
                {"id": f"evt_m{i}", "at": now - timedelta(seconds=age), "status": status,
                 "due": now if status in ("pending", "failed") else None},
            )  # fmt: skip
        for coach, (status, currency, amount) in enumerate(
            [("paid", "usd", 1000), ("paid", "usd", 500), ("failed", "usd", 70),
             ("pending", "jpy", 900)]
        ):  # fmt: skip
            await conn.execute(
                text(
                    "INSERT INTO payouts (coach_id, currency, amount, status, destination,"
                    " stripe_transfer_id) VALUES (:c, :cur, :a, :s, 'acct_1', :tr)"
                ),
                {"c": coach + 1, "cur": currency, "a": amount, "s": status,
                 "tr": f"tr_{coach}" if status == "paid" else None},
            )  # fmt: skip
        await conn.execute(
            text("INSERT INTO job_runs VALUES ('payouts.pay', '2030-01-01T00:00:00Z')")
        )


async def test_database_counts_are_read_at_scrape_time(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: Any
) -> None:
    await _seed(clean_engine, api_clock.now())
    body = (await app_client.get("/metrics", headers=tokens.headers("admin"))).text
    assert sample(body, "coachpay_metrics_database_up") == 1
    assert sample(body, "coachpay_webhook_events", status="processed") == 2
    assert sample(body, "coachpay_webhook_events", status="pending") == 1
    assert sample(body, "coachpay_webhook_events", status="ignored") == 1
    assert sample(body, "coachpay_inbox_backlog") == 2
    assert sample(body, "coachpay_inbox_oldest_unprocessed_age_seconds") == 120
    assert sample(body, "coachpay_payouts", status="paid", currency="usd") == 2
    amount = "coachpay_payouts_amount_minor_units"
    assert sample(body, amount, status="paid", currency="usd") == 1500
    assert sample(body, "coachpay_payouts", status="pending", currency="jpy") == 1
    job = sample(body, "coachpay_job_last_success_timestamp_seconds", job="payouts.pay")
    assert job == 1893456000
    assert (sample(body, "coachpay_db_pool_capacity") or 0) >= 1
    assert sample(body, "coachpay_db_pool_in_use") is not None


async def test_ready_once_at_head_and_not_while_held(
    app_client: Client, app_runtime: Runtime
) -> None:
    r = await app_client.get("/health/ready")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})
    app_runtime.not_ready["demo_seed"] = "running"
    try:
        r = await app_client.get("/health/ready")
    finally:
        app_runtime.not_ready.clear()
    assert r.status_code == 503
    assert r.json() == {
        "error": "NotReady",
        "detail": "demo_seed: running",
        "status": "not ready",
        "waiting_for": {"demo_seed": "running"},
    }


async def test_not_ready_when_the_schema_is_behind(app_client: Client) -> None:
    from alembic.script import ScriptDirectory

    from migrations.runner import alembic_config

    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    behind = script.get_revision(head).down_revision
    ctx = app_client.app.state["ctx"]
    async with ctx.factory() as db, db.begin():
        await db.execute(text(f"UPDATE alembic_version SET version_num = '{behind}'"))
    try:
        r = await app_client.get("/health/ready")
        live = await app_client.get("/health/ready")
    finally:
        async with ctx.factory() as db, db.begin():
            await db.execute(text(f"UPDATE alembic_version SET version_num = '{head}'"))
    assert r.status_code == 503 and live.status_code == 503
    assert f"needs {head}" in r.json()["waiting_for"]["database"]
    assert (await app_client.get("/health/ready")).status_code == 200


class _Conn:
    """What metrics_guard reads of a connection."""

    def __init__(self, settings: Settings, client: str) -> None:
        ctx = SimpleNamespace(settings=settings, tokens=TokenVerifier(settings))
        self.app = SimpleNamespace(state={"ctx": ctx})
        self.client = SimpleNamespace(host=client)
        self.headers: dict[str, str] = {}
        self.cookies: dict[str, str] = {}
        self.scope: dict[str, Any] = {}


@pytest.mark.parametrize(
    ("env", "host", "client", "token", "open_"),
    [
        ("development", "127.0.0.1", "127.0.0.1", None, True),  # the demo
        ("development", "127.0.0.1", "10.1.2.3", None, False),  # a proxied stranger
        ("development", "0.0.0.0", "127.0.0.1", None, False),  # bound beyond loopback
        ("production", "127.0.0.1", "127.0.0.1", None, False),
        ("development", "127.0.0.1", "127.0.0.1", "t0ken", False),  # a token: always asked
    ],
)
async def test_metrics_are_open_only_to_loopback_in_development_without_a_token(
    api_settings: Settings, env: str, host: str, client: str, token: str | None, open_: bool
) -> None:
    settings = api_settings.model_copy(
        update={"env": env, "host": host, "metrics_token": SecretStr(token) if token else None}
    )
    conn = _Conn(settings, client)
    if open_:
        await metrics_guard(conn, None)  # type: ignore[arg-type]
    else:
        with pytest.raises(AuthenticationFailed):
            await metrics_guard(conn, None)  # type: ignore[arg-type]


async def test_metrics_on_their_own_port(api_settings: Settings, clean_engine: AsyncEngine) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = api_settings.model_copy(update={"metrics_port": port, "host": "127.0.0.1"})
    runtime = Runtime(settings, export_metrics=True)
    await runtime.start()
    try:
        # The exporter thread reads the database on this loop: fetch from another thread.
        r = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        await runtime.stop()
    assert r.status_code == 200
    assert sample(r.text, "coachpay_metrics_database_up") == 1
    assert sample(r.text, "coachpay_inbox_backlog") == 0
    with pytest.raises(httpx.ConnectError):  # stopped with the runtime
        await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=2)


async def test_a_booking_routes_lines_carry_its_booking_id(
    app_client: Client, tokens: Tokens
) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(formatter("json"))
    access = logging.getLogger("coachpay.access")
    access.addHandler(handler)
    try:
        r = await app_client.post("/v1/bookings/98765/cancel", headers=tokens.headers("mentee"))
        await app_client.get("/health/ready")
    finally:
        access.removeHandler(handler)
    assert r.status_code == 404
    first, second = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["booking_id"] == 98765 and first["path"] == "/v1/bookings/98765/cancel"
    assert "booking_id" not in second  # the next request starts clean
