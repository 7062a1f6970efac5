"""The demo's marketplace fulfilment: a small webhook receiver on a loopback port.

``coachpay demo`` registers it as an outgoing-events endpoint (through
core.outbox's own service functions) and keeps its signing secret. It does
what the marketplace's own receiver would: verify each request with the
``standardwebhooks`` library (a bad signature is a 400, nothing kept), apply
each event once, keyed by ``webhook-id`` (a retry or a replay carries the same
id: answered 200, not applied twice), and act on it. Here acting is writing
lines: a paid booking gets a calendar entry and a confirmation; a cancelled or
fully refunded one loses its entry. The lines live in memory, for the demo
process (the admin page shows them, newest first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.clock import Clock
from core.outbox import endpoints, ssrf
from core.outbox.delivery import DeliveryConfig
from core.outbox.loop import deliver_due
from core.settings import Settings

PATH = "/fulfilment/webhooks"
MAX_BODY_BYTES = 1024 * 1024
KEPT_LINES = 1000
# The receiver listens here; webhooks may go nowhere else private.
LOOPBACK = "127.0.0.1/32"
EVENT_TYPES = ["booking.paid", "booking.cancelled", "booking.refunded"]


Factory = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Line:
    """One thing the fulfilment did."""

    at: datetime  # when it happened (the event's timestamp: coachpay's clock)
    event_id: str  # webhook-id
    event_type: str
    booking_id: int | None
    action: str  # calendar_entry_created | confirmation_sent | calendar_entry_removed
    text: str


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass
class DemoReceiver:
    secret: str = ""
    port: int = 0
    lines: deque[Line] = field(default_factory=lambda: deque(maxlen=KEPT_LINES))
    seen: set[str] = field(default_factory=set)
    received: int = 0  # verified requests, duplicates included
    refused: int = 0  # bad signature or body
    calendar: dict[int, str] = field(default_factory=dict)  # booking id -> entry
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def newest_first(self) -> list[Line]:
        return list(reversed(self.lines))

    def apply(self, msg_id: str, event: dict[str, Any], *, at: datetime) -> bool:
        """Act on ``event`` once per ``msg_id``; False for a duplicate."""
        if msg_id in self.seen:
            return False
        self.seen.add(msg_id)
        kind = str(event.get("type", ""))
        at = _when(event.get("timestamp")) or at
        data = _object(event.get("data"))
        booking = _object(data.get("booking"))
        raw_id = booking.get("id")
        booking_id = raw_id if isinstance(raw_id, int) else None
        if booking_id is None:
            return True

        def line(action: str, text: str) -> None:
            self.lines.append(Line(at, msg_id, kind, booking_id, action, text))

        mentee = booking.get("mentee_id")
        removed = kind == "booking.cancelled" or (kind == "booking.refunded" and data.get("full"))
        if kind == "booking.paid":
            entry = f"session {booking.get('coaching_session_id')}, mentee {mentee}"
            self.calendar[booking_id] = entry
            line("calendar_entry_created", f"calendar entry for booking {booking_id}: {entry}")
            line(
                "confirmation_sent", f"confirmation of booking {booking_id} sent to mentee {mentee}"
            )
        elif removed and self.calendar.pop(booking_id, None) is not None:
            line("calendar_entry_removed", f"calendar entry of booking {booking_id} removed")
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES or not message.get("more_body"):
                break
        status, answer = self._handle(scope, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    def _handle(self, scope: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if scope.get("method") != "POST" or scope.get("path") != PATH:
            return 404, {"error": "not found"}
        if len(body) > MAX_BODY_BYTES:
            self.refused += 1
            return 413, {"error": "too large"}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            event = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            self.refused += 1
            return 400, {"error": "signature not verified"}
        if not isinstance(event, dict):
            self.refused += 1
            return 400, {"error": "not an event"}
        self.received += 1
        applied = self.apply(headers.get("webhook-id", ""), event, at=datetime.now(UTC))
        return 200, {"ok": True, "duplicate": not applied}

    async def start(self) -> DemoReceiver:
        """Serve on a free loopback port, in this event loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", self.port))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self, log_config=None, access_log=False, lifespan="on", http="h11",
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        server = uvicorn.Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the demo receiver did not start")
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._server = self._task = None


_OWED = text(
    "SELECT (SELECT count(*) FROM outbox_deliveries d JOIN outbox_endpoints ep "
    "  ON ep.id = d.endpoint_id WHERE ep.enabled AND d.status = 'pending') "
    "+ (SELECT count(*) FROM outbox_events e, outbox_cursor c WHERE c.id = 1 "
    "  AND (e.txid, e.id) > (c.txid, c.event_id))"
)


def with_loopback(settings: Settings) -> Settings:
    """``settings`` with webhooks to 127.0.0.1 allowed (the demo's receiver)."""
    if ssrf.refusal("127.0.0.1", ssrf.allowed_networks(settings.webhook_allowed_networks)) is None:
        return settings
    nets = ",".join(filter(None, (settings.webhook_allowed_networks, LOOPBACK)))
    return settings.model_copy(update={"webhook_allowed_networks": nets})


async def register(
    factory: Factory, *, settings: Settings, now: datetime
) -> tuple[DemoReceiver, int]:
    """Start the receiver and register it as an admin would; its secret stays with it."""
    receiver = await DemoReceiver().start()
    async with factory() as db, db.begin():
        ep, secret = await endpoints.create_endpoint(
            db, url=receiver.url, event_types=EVENT_TYPES,
            description="the demo's fulfilment: calendar entries and confirmations",
            guard=endpoints.Guard.from_settings(settings), actor_user_id=None, now=now,
        )  # fmt: skip
    receiver.secret = secret
    return receiver, ep.id


async def unregister(
    factory: Factory, receiver: DemoReceiver, endpoint_id: int | None, *, now: datetime
) -> None:
    """Its port closes with this process: no later worker should keep sending there."""
    with contextlib.suppress(Exception):
        if endpoint_id is not None:
            async with factory() as db, db.begin():
                await endpoints.update_endpoint(
                    db, endpoint_id=endpoint_id, changes={"enabled": False},
                    guard=endpoints.Guard(), actor_user_id=None, now=now,
                )  # fmt: skip
    await receiver.stop()


async def deliver_owed(factory: Factory, *, clock: Clock, rounds: int = 100) -> None:
    """Delivery passes until no enabled endpoint is owed anything.

    Events are read only below the oldest transaction still writing anywhere on
    the server (core.outbox.events): a few rounds may pass before all are out."""
    config = DeliveryConfig(allowed=ssrf.allowed_networks(LOOPBACK))
    for _ in range(rounds):
        await deliver_due(factory, clock=clock, config=config)
        async with factory() as db:
            owed = await db.scalar(_OWED)
        if not owed:
            return
        await asyncio.sleep(0.1)
