"""Fixtures: one emulator per test session (reset before each test), a real Stripe SDK client,
and a tiny webhook receiver standing in for coachpay's webhook endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from emulator.server import EmulatorServer

PLATFORM_SECRET = "whsec_test_platform"
CONNECT_SECRET = "whsec_test_connect"


@dataclass
class Received:
    path: str
    signature: str
    payload: bytes

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.payload)
        return data


@dataclass
class Receiver:
    """Records every webhook POST; answers the statuses queued in `script`, then 200."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Runs inside the webhook request, before answering (like a handler re-reading from Stripe).
    callback: Callable[[dict[str, Any]], None] | None = None

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.script.clear()
            self.callback = None

    def types(self, path: str | None = None) -> list[str]:
        with self.lock:
            return [r.event["type"] for r in self.received if path is None or r.path == path]

    def of_type(self, event_type: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.event["type"] == event_type]


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = self.rfile.read(length)
            if state.callback is not None:
                state.callback(json.loads(payload))
            with state.lock:
                state.received.append(
                    Received(self.path, self.headers.get("Stripe-Signature", ""), payload)
                )
                status = state.script.pop(0) if state.script else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def session_emulator(receiver: Receiver) -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        platform_webhook_url=f"{receiver.url}/platform",
        connect_webhook_url=f"{receiver.url}/connect",
        platform_secret=PLATFORM_SECRET,
        connect_secret=CONNECT_SECRET,
        seed=1,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def emulator(session_emulator: EmulatorServer, receiver: Receiver) -> Iterator[EmulatorServer]:
    session_emulator.control("POST", "reset")
    session_emulator.control(
        "POST",
        "config",
        {
            "platform_webhook_url": f"{receiver.url}/platform",
            "connect_webhook_url": f"{receiver.url}/connect",
            "platform_secret": PLATFORM_SECRET,
            "connect_secret": CONNECT_SECRET,
            "funds_delay_seconds": 0,
            "webhook_retry_base_seconds": 0.05,
            "webhook_max_attempts": 5,
            "platform_enabled_events": ["*"],
            "connect_enabled_events": ["*"],
        },
    )
    session_emulator.control("POST", "webhooks/resume")
    receiver.clear()
    yield session_emulator
    session_emulator.control("DELETE", "faults")
    session_emulator.control("POST", "webhooks/resume")
    session_emulator.flush_webhooks(timeout=5)


def make_client(server: EmulatorServer, timeout: float = 10.0) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_x",
        http_client=stripe.HTTPXClient(allow_sync_methods=True, timeout=timeout),
        base_addresses={
            "api": server.base_url,
            "connect": server.base_url,
            "files": server.base_url,
        },
        max_network_retries=0,
    )


@pytest.fixture
def client(emulator: EmulatorServer) -> stripe.StripeClient:
    return make_client(emulator)


# ---- helpers used across tests ----------------------------------------------------------------


def create_coach(client: stripe.StripeClient, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "controller": {
            "stripe_dashboard": {"type": "express"},
            "fees": {"payer": "application"},
            "losses": {"payments": "application"},
        },
        "capabilities": {"transfers": {"requested": True}},
        "country": "US",
        "email": "coach@example.com",
        "metadata": {"coach_id": "42"},
        **extra,
    }
    return client.v1.accounts.create(params)  # type: ignore[arg-type]


def onboarded_coach(client: stripe.StripeClient, server: EmulatorServer) -> str:
    account = create_coach(client)
    server.control("POST", f"accounts/{account.id}/complete_onboarding")
    return str(account.id)


def create_session(client: stripe.StripeClient, amount: int = 10_000, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": amount,
                    "product_data": {"name": "Coaching session"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "https://coachpay.test/ok?cs={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://coachpay.test/cancel",
        "metadata": {"booking_id": "7"},
        "client_reference_id": "booking-7",
        "customer_email": "mentee@example.com",
        "payment_intent_data": {"transfer_group": "booking-7", "metadata": {"booking_id": "7"}},
        **extra,
    }
    return client.v1.checkout.sessions.create(params)  # type: ignore[arg-type]


def paid_session(client: stripe.StripeClient, server: EmulatorServer, amount: int = 10_000) -> Any:
    session = create_session(client, amount)
    server.control("POST", f"checkout/sessions/{session.id}/pay", {"outcome": "succeeded"})
    return client.v1.checkout.sessions.retrieve(session.id)


def fund_platform(client: stripe.StripeClient, server: EmulatorServer, amount: int) -> None:
    """Make the platform's available balance at least `amount` by paying a session."""
    # net = gross - (2.9 % + 30): gross a bit above amount covers the fee.
    paid_session(client, server, amount + amount // 20 + 100)
