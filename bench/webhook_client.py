"""A light HTTP/1.1 load client for bench/webhooks.py: keep-alive connections, no tasks.

An async httpx client spends ~1 ms of CPU per request (a task, a request
object, h11 parsing): at 1,000 events/s it needs a whole core, on a 2-core
machine that also runs the server and PostgreSQL. Here a request is bytes
written to an idle connection (headers pre-built, the signature computed at
send time with hmac), and the answer is read by a protocol callback that
parses only the status line and Content-Length: a few microseconds each.

Open loop: ``LoadClient.launch`` is called at each request's slot; with no
idle connection the request waits in a FIFO for the next one to free up
(that wait counts in its latency, as it would in a client's pool).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_HEADER_END = b"\r\n\r\n"


@dataclass
class Tally:
    """What one step saw: latencies (s) of 200s, other statuses, transport errors."""

    ok: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    in_flight: int = 0


class _Conn(asyncio.Protocol):
    def __init__(self, client: LoadClient) -> None:
        self.client = client
        self.transport: Any = None  # an asyncio or uvloop transport
        self.buf = bytearray()
        self.started = 0.0
        self.tally: Tally | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.ready.set_result(None)

    def send(self, raw: bytes, started: float, tally: Tally) -> None:
        self.started, self.tally = started, tally
        assert self.transport is not None
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(_HEADER_END)
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            eol = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : eol if eol > 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[: end + 4 + length]
        tally, self.tally = self.tally, None
        if tally is not None:
            self.client.done(self, tally, status, time.perf_counter() - self.started)

    def connection_lost(self, exc: Exception | None) -> None:
        tally, self.tally = self.tally, None
        self.client.lost(self, tally)


class LoadClient:
    def __init__(self, host: str, port: int, connections: int, secret: str) -> None:
        self.host, self.port, self.size = host, port, connections
        self.secret = secret.encode()
        self.idle: list[_Conn] = []
        self.queue: deque[tuple[bytes, float, Tally]] = deque()
        self.on_idle: Callable[[], None] | None = None

    async def open(self) -> None:
        await asyncio.gather(*(self._connect() for _ in range(self.size)))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        await conn.ready
        self._free(conn)

    def request(self, path: str, body: bytes, *, signed: bool = True) -> bytes:
        """The raw POST, signed now (Stripe's scheme: HMAC-SHA256 of ``t.body``)."""
        sig = b""
        if signed:
            t = int(time.time())
            digest = hmac.new(self.secret, b"%d." % t + body, hashlib.sha256).hexdigest()
            sig = b"stripe-signature: t=%d,v1=%s\r\n" % (t, digest.encode())
        return (
            b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n%s"
            b"content-length: %d\r\n\r\n%s"
        ) % (path.encode(), self.host.encode(), sig, len(body), body)

    def get(self, path: str, headers: bytes = b"") -> bytes:
        """A raw GET; ``headers``: more header lines, each ending in CRLF."""
        return b"GET %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (
            path.encode(),
            self.host.encode(),
            headers,
        )

    def launch(self, raw: bytes, tally: Tally) -> None:
        tally.in_flight += 1
        started = time.perf_counter()
        if self.idle:
            self.idle.pop().send(raw, started, tally)
        else:
            self.queue.append((raw, started, tally))

    def done(self, conn: _Conn, tally: Tally, status: int, latency: float) -> None:
        tally.in_flight -= 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if status == 200:
            tally.ok += 1
            tally.latencies.append(latency)
        else:
            tally.errors += 1
        self._free(conn)

    def lost(self, conn: _Conn, tally: Tally | None) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if tally is not None:
            tally.in_flight -= 1
            tally.errors += 1
        # Replace it, so the pool keeps its size.
        asyncio.get_running_loop().create_task(self._connect())

    def _free(self, conn: _Conn) -> None:
        if self.queue:
            raw, started, tally = self.queue.popleft()
            conn.send(raw, started, tally)
        else:
            self.idle.append(conn)
            if self.on_idle is not None:
                self.on_idle()

    def cancel_queued(self) -> int:
        """Drop the requests still waiting for a connection (a step's end); how many."""
        n = len(self.queue)
        for _, _, tally in self.queue:
            tally.in_flight -= 1
            tally.errors += 1
        self.queue.clear()
        return n

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
