"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 (uvicorn, own thread).

It verifies each request with the ``standardwebhooks`` library and applies
each event once, keyed by ``webhook-id`` (what the README's reference
receiver does): ``requests`` lists every request, ``effects`` the events
applied, in the order applied. ``answer`` decides the status: 200, or
anything else to play a receiver that is down or failing (the effect of a
request answered 500 after it was applied is kept, as a crash after the
commit would).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    secret: str = ""
    # (request number, webhook-id) -> status to answer; default 200.
    answer: Callable[[int, str], int] = lambda n, msg_id: 200
    apply_before_answer: bool = False
    requests: list[Request] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def wait_for(self, requests: int, timeout: float = 30.0) -> bool:
        """Block (a thread, not the event loop) until ``requests`` have arrived."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < requests:
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    return False
        return True

    def effect_ids(self) -> list[str]:
        with self._lock:
            return [e["id"] for e in self.effects]

    def effect_types(self) -> list[str]:
        with self._lock:
            return [e["type"] for e in self.effects]

    def _apply(self, msg_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            if msg_id not in self.seen:
                self.seen.add(msg_id)
                self.effects.append(event)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        event: dict[str, Any] | None = None
        try:
            event = Webhook(self.secret).verify(body, headers) if self.secret else json.loads(body)
            verified = bool(self.secret)
        except (WebhookVerificationError, ValueError):
            verified = False
        with self._arrived:
            self.requests.append(Request(headers, body, verified))
            number = len(self.requests)
            self._arrived.notify_all()
        msg_id = headers.get("webhook-id", "")
        status = self.answer(number, msg_id) if event is not None else 400
        if event is not None and (status == 200 or self.apply_before_answer):
            self._apply(msg_id, event)
        payload = json.dumps({"ok": status == 200}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})

    def start(self) -> Receiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self, log_level="warning", access_log=False, lifespan="on", http="h11",
            loop="asyncio", timeout_graceful_shutdown=1,
        )  # fmt: skip
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
