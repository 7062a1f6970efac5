"""End to end: the app on a real port, the Stripe emulator delivering signed webhooks to it.

A coach onboards from nothing to active through the emulator's control API
and the Connect webhook, is restricted, recovers, and is disabled; replayed
and out-of-order account.updated events never move the record backwards;
two concurrent onboarding calls make one Stripe account.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.auth import mint_token
from api.runtime import Runtime
from connect.models import ConnectAccount
from core.inbox_models import WebhookEvent
from core.settings import Settings, load_settings
from core.stripe_webhooks import sign_payload
from emulator.server import EmulatorServer

CONNECT_SECRET = "whsec_e2e_connect"
PLATFORM_SECRET = "whsec_e2e_platform"
JWT_SECRET = "e2e-jwt-secret-0123456789-abcdefghijklmnop"


class LiveApp:
    """coachpay served by uvicorn in a thread, so the emulator can reach its webhooks."""

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.sock = sock
        runtime = Runtime(settings, webhook_processing="inline")
        app = create_app(settings, runtime=runtime, stop_runtime=True)
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        )
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )

    def __enter__(self) -> LiveApp:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "app did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def live(commit_db_url: str, clean_engine: AsyncEngine) -> Iterator[tuple[str, EmulatorServer]]:
    sock = _free_socket()
    app_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    emulator = EmulatorServer(
        platform_webhook_url=f"{app_url}/v1/webhooks/stripe",
        connect_webhook_url=f"{app_url}/v1/webhooks/stripe/connect",
        platform_secret=PLATFORM_SECRET,
        connect_secret=CONNECT_SECRET,
    ).start()
    settings = load_settings(
        database_url=commit_db_url,
        stripe_secret_key="sk_test_e2e",
        stripe_api_base=emulator.base_url,
        stripe_webhook_secret=PLATFORM_SECRET,
        stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=JWT_SECRET,
        public_url=app_url,
        run_jobs=False,
        db_pool_size=5,
    )
    try:
        with LiveApp(settings, sock):
            yield app_url, emulator
    finally:
        emulator.stop()


@pytest.fixture
async def client(live: tuple[str, EmulatorServer]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live[0], timeout=30) as c:
        yield c


def coach(sub: str = "e2e-coach") -> dict[str, str]:
    settings = load_settings(jwt_secret=JWT_SECRET)
    return {"Authorization": f"Bearer {mint_token(settings, sub, 'coach')}"}


async def flush(emulator: EmulatorServer) -> None:
    result = await asyncio.to_thread(emulator.flush_webhooks, 20)
    assert result["pending"] == 0 and result["failed"] == 0, result


async def control(emulator: EmulatorServer, path: str, body: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(emulator.control, "POST", path, body or {})


async def account(client: httpx.AsyncClient, sub: str = "e2e-coach") -> dict[str, Any]:
    resp = await client.get("/v1/coaches/me/account", headers=coach(sub))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_coach_onboards_to_active_then_restricted_then_disabled(
    live: tuple[str, EmulatorServer], client: httpx.AsyncClient, clean_engine: AsyncEngine
) -> None:
    _, emulator = live
    assert (await account(client))["status"] == "not_started"
    resp = await client.post("/v1/coaches/me/onboarding", headers=coach(), json={"country": "US"})
    assert resp.status_code == 200, resp.text
    acct = resp.json()["stripe_account_id"]
    assert resp.json()["url"].startswith(f"{emulator.base_url}/_emulator/onboarding/{acct}")
    stripe_acct = emulator.state.accounts[acct]
    assert stripe_acct["controller"]["stripe_dashboard"]["type"] == "express"
    assert stripe_acct["controller"]["losses"]["payments"] == "application"
    before = await account(client)
    assert before["status"] == "onboarding" and before["requirements_currently_due"]

    await control(emulator, f"accounts/{acct}/complete_onboarding")
    await flush(emulator)
    active = await account(client)
    assert active["status"] == "active"
    assert active["charges_enabled"] and active["payouts_enabled"]
    assert active["requirements_currently_due"] == []
    assert active["dashboard_url"] == f"{emulator.base_url}/_emulator/dashboard/{acct}"

    await control(emulator, f"accounts/{acct}/restrict", {"past_due": ["individual.id_number"]})
    await flush(emulator)
    restricted = await account(client)
    assert restricted["status"] == "restricted" and restricted["dashboard_url"] is None
    assert restricted["requirements_past_due"] == ["individual.id_number"]
    assert restricted["disabled_reason"] == "requirements.past_due"
    again = await client.post("/v1/coaches/me/onboarding", headers=coach())
    assert again.status_code == 200 and again.json()["stripe_account_id"] == acct

    await control(emulator, f"accounts/{acct}/complete_onboarding")
    await flush(emulator)
    assert (await account(client))["status"] == "active"

    await control(emulator, f"accounts/{acct}/disable", {"disabled_reason": "rejected.fraud"})
    await flush(emulator)
    disabled = await account(client)
    assert disabled["status"] == "disabled" and disabled["disabled_reason"] == "rejected.fraud"
    refused = await client.post("/v1/coaches/me/onboarding", headers=coach())
    assert refused.status_code == 409
    assert len(emulator.state.accounts) == 1

    async with clean_engine.connect() as conn:
        statuses = (
            (
                await conn.execute(
                    select(WebhookEvent.status).where(WebhookEvent.type == "account.updated")
                )
            )
            .scalars()
            .all()
        )
    assert len(statuses) >= 4 and set(statuses) == {"processed"}


async def test_account_link_page_and_return_url_show_the_status(
    live: tuple[str, EmulatorServer], client: httpx.AsyncClient
) -> None:
    _, emulator = live
    link = (await client.post("/v1/coaches/me/onboarding", headers=coach())).json()["url"]
    async with httpx.AsyncClient(timeout=30) as browser:
        # Following the link: the emulator completes onboarding and redirects to our
        # return_url, which re-reads the account (the webhook may not have landed yet).
        page = await browser.get(link, follow_redirects=True)
    assert page.status_code == 200, page.text
    assert "Stripe account: active" in page.text
    async with httpx.AsyncClient(timeout=30) as browser:
        refresh = await browser.get(link + "&action=refresh", follow_redirects=False)
        assert refresh.status_code == 302
        back = await browser.get(refresh.headers["location"], follow_redirects=False)
    assert back.status_code == 303
    assert back.headers["location"].startswith(f"{emulator.base_url}/_emulator/onboarding/")


async def test_replayed_and_out_of_order_events_do_not_undo_a_newer_state(
    live: tuple[str, EmulatorServer], client: httpx.AsyncClient, clean_engine: AsyncEngine
) -> None:
    _, emulator = live
    acct = (await client.post("/v1/coaches/me/onboarding", headers=coach())).json()[
        "stripe_account_id"
    ]
    await control(emulator, f"accounts/{acct}/restrict")
    await flush(emulator)
    await control(emulator, f"accounts/{acct}/complete_onboarding")
    await flush(emulator)
    assert (await account(client))["status"] == "active"
    events = await asyncio.to_thread(emulator.control, "GET", "events?type=account.updated", None)
    restricted_evt = next(
        e["id"]
        for e in events["data"]
        if emulator.state.events[e["id"]]["data"]["object"]["requirements"]["past_due"]
    )
    # Stripe redelivers the same event (same id): stored once, nothing happens again.
    await control(emulator, "events/redeliver", {"ids": [restricted_evt], "times": 2})
    # An old snapshot under a new id (as a late, out-of-order delivery): the handler
    # re-reads the account from Stripe, which says active.
    old = json.loads(json.dumps(emulator.state.events[restricted_evt]))
    old["id"] = "evt_late_copy"
    body = json.dumps(old).encode()
    resp = await client.post(
        "/v1/webhooks/stripe/connect",
        content=body,
        headers={
            "Stripe-Signature": sign_payload(body, CONNECT_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert resp.status_code == 200
    view = await account(client)
    assert view["status"] == "active" and view["requirements_past_due"] == []
    async with clean_engine.connect() as conn:
        row = (await conn.execute(select(ConnectAccount.status))).scalar_one()
        late = (
            await conn.execute(
                select(WebhookEvent.status).where(WebhookEvent.stripe_event_id == "evt_late_copy")
            )
        ).scalar_one()
    assert row == "active" and late == "processed"


async def test_two_concurrent_onboarding_calls_create_one_account(
    live: tuple[str, EmulatorServer], client: httpx.AsyncClient, clean_engine: AsyncEngine
) -> None:
    _, emulator = live
    headers = coach("racer")
    await account(client, "racer")  # provisioned first: both calls race on onboarding only
    first, second = await asyncio.gather(
        client.post("/v1/coaches/me/onboarding", headers=headers),
        client.post("/v1/coaches/me/onboarding", headers=headers),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["stripe_account_id"] == second.json()["stripe_account_id"]
    assert sorted([first.json()["account_created"], second.json()["account_created"]]) == [
        False,
        True,
    ]
    assert len(emulator.state.accounts) == 1
    async with clean_engine.connect() as conn:
        assert len((await conn.execute(select(ConnectAccount.id))).all()) == 1
