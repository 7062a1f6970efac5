"""Signed, asynchronous, retried webhook delivery (Stripe's behaviour, compressed in time).

Deliveries run as asyncio tasks on the server's event loop, never inside the API request, so a
slow or failing receiver (or one that calls the API back while handling the event) does not
delay or deadlock anything. `pending` counts queued + in flight + waiting for a retry, which is
what `flush` waits on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from emulator.store import Store


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value: `t=<unix>,v1=<hex hmac_sha256(secret, "t.payload")>`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _enabled(event_type: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


class WebhookDispatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[int, str, int]] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._resumed: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._generation = 0
        self.pending = 0
        self.delivered = 0
        self.failed = 0

    # ---- lifecycle (on the server loop) ----------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._client = httpx.AsyncClient(
            timeout=self.store.config.webhook_timeout_seconds,
            headers={"User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
        )
        count = max(1, self.store.config.webhook_concurrency)
        self._workers = [asyncio.create_task(self._work()) for _ in range(count)]
        # Events emitted before the loop ran (none in practice) are picked up now.
        for event_id, record in list(self.store.deliveries.items()):
            if record["status"] == "pending":
                self._enqueue(self._generation, event_id)

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()

    @property
    def paused(self) -> bool:
        return self._resumed is not None and not self._resumed.is_set()

    def pause(self) -> None:
        if self._resumed is not None:
            self._resumed.clear()

    def resume(self) -> None:
        if self._resumed is not None:
            self._resumed.set()

    def reset(self) -> None:
        """Forget everything queued (the store is being reset); stale retries are ignored."""
        self._generation += 1
        self.pending = 0
        self.delivered = 0
        self.failed = 0
        if self._idle is not None:
            self._idle.set()

    def summary(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "delivered": self.delivered,
            "failed": self.failed,
            "paused": self.paused,
        }

    async def flush(self, wait_seconds: float) -> dict[str, Any]:
        if self._idle is not None and not self.paused:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), wait_seconds)
        return self.summary()

    # ---- enqueueing ----------------------------------------------------------------------------

    def event_created(self, event_id: str) -> None:
        """Store hook, called under the store lock for every new event, from any thread."""
        event = self.store.events[event_id]
        endpoint = "connect" if event.get("account") else "platform"
        config = self.store.config
        url = config.connect_webhook_url if endpoint == "connect" else config.platform_webhook_url
        patterns = (
            config.connect_enabled_events
            if endpoint == "connect"
            else config.platform_enabled_events
        )
        record: dict[str, Any] = {"endpoint": endpoint, "status": "pending", "attempts": []}
        self.store.deliveries[event_id] = record
        if url is None:
            record["status"] = "no_endpoint"
            return
        if not _enabled(event["type"], patterns):
            record["status"] = "filtered"
            return
        event["pending_webhooks"] = 1
        loop = self.loop
        if loop is not None:
            # Counters and asyncio objects are touched only on the loop's own thread.
            loop.call_soon_threadsafe(self._enqueue, self._generation, event_id)
        # Without a loop yet, start() picks the event up.

    def _enqueue(self, generation: int, event_id: str) -> None:
        if generation != self._generation:
            return
        self.pending += 1
        if self._idle is not None:
            self._idle.clear()
        self._put((generation, event_id, 1))

    def _put(self, item: tuple[int, str, int]) -> None:
        if item[0] != self._generation or self._queue is None:
            return
        self._queue.put_nowait(item)

    def _done(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and self._idle is not None:
            self.pending = 0
            self._idle.set()

    # ---- delivering ----------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None and self._resumed is not None
        while True:
            generation, event_id, attempt = await self._queue.get()
            await self._resumed.wait()
            if generation != self._generation:
                continue
            status, error = await self.deliver(event_id)
            if generation != self._generation:
                continue
            ok = status is not None and 200 <= status < 300
            with self.store.lock:
                record = self.store.deliveries.get(event_id)
                event = self.store.events.get(event_id)
                if record is not None:
                    record["attempts"].append(
                        {"at": time.time(), "status_code": status, "error": error}
                    )
                config = self.store.config
                last = attempt >= config.webhook_max_attempts
                if record is not None and (ok or last):
                    record["status"] = "delivered" if ok else "failed"
                    if event is not None:
                        event["pending_webhooks"] = 0
            if ok or last or record is None:
                if ok:
                    self.delivered += 1
                elif record is not None:
                    self.failed += 1
                self._done()
                continue
            delay = min(
                config.webhook_retry_max_seconds,
                config.webhook_retry_base_seconds * 2 ** (attempt - 1),
            )
            asyncio.get_running_loop().call_later(
                delay, self._put, (generation, event_id, attempt + 1)
            )

    async def deliver(self, event_id: str) -> tuple[int | None, str | None]:
        """One signed POST of the event to its endpoint: (status code, error)."""
        with self.store.lock:
            event = self.store.events.get(event_id)
            if event is None:
                return None, "no such event"
            endpoint = "connect" if event.get("account") else "platform"
            config = self.store.config
            if endpoint == "connect":
                url, secret = config.connect_webhook_url, config.connect_secret
            else:
                url, secret = config.platform_webhook_url, config.platform_secret
            payload = json.dumps(event, indent=2).encode()
        if url is None:
            return None, "no endpoint configured"
        # Signed with the wall clock, not the emulator clock, so receivers' tolerance checks pass.
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(payload, secret, int(time.time())),
        }
        assert self._client is not None
        try:
            response = await self._client.post(url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    async def redeliver(self, event_ids: list[str], times: int) -> list[dict[str, Any]]:
        """Deliver exactly these events, in this order, `times` rounds, without retries."""
        results = []
        for _ in range(times):
            for event_id in event_ids:
                status, error = await self.deliver(event_id)
                results.append({"event": event_id, "status_code": status, "error": error})
                with self.store.lock:
                    record = self.store.deliveries.get(event_id)
                    if record is not None:
                        record["attempts"].append(
                            {"at": time.time(), "status_code": status, "error": error}
                        )
        return results
