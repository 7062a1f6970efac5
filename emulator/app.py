"""The ASGI application: Stripe's `/v1` wire protocol, faults, idempotency, and the control API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from emulator import control
from emulator.config import Config
from emulator.errors import ControlError, StripeError
from emulator.faults import FaultInjector
from emulator.forms import parse_form
from emulator.resources import (
    accounts,
    balance,
    checkout,
    customers,
    disputes,
    events,
    payments,
    payouts,
    transfers,
)
from emulator.router import Ctx, Resp, Route, Router
from emulator.stats import Stats
from emulator.store import API_VERSION, IdempotencyRecord, Store
from emulator.webhooks import WebhookDispatcher

log = logging.getLogger("emulator")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
RATE_LIMITED = StripeError(
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits.",
    status=429,
    code="rate_limit",
)
SERVER_ERROR = StripeError(
    "An unknown error occurred (emulated fault).", status=500, type="api_error"
)
TICK_SECONDS = 0.25


class EmulatorApp:
    def __init__(self, config: Config | None = None, seed: int = 0) -> None:
        self.config = config or Config()
        self.store = Store(self.config, seed)
        self.faults = FaultInjector(seed)
        self.webhooks = WebhookDispatcher(self.store)
        self.store.on_event = self.webhooks.event_created
        self.stats = Stats()
        self.api = Router()
        modules = (accounts, checkout, customers, payments, transfers, balance, events)
        for module in (*modules, disputes, payouts):
            module.register(self.api)
        self.control = Router()
        control.register(self.control)
        self._request_numbers = itertools.count(1)
        self._ticker: asyncio.Task[None] | None = None

    def reset(self) -> None:
        with self.store.lock:
            self.store.reset()
            self.webhooks.reset()
            self.faults.clear()
            self.faults.injected.clear()
            self.stats.reset()

    def tick(self) -> None:
        """Time-driven changes: pending funds become available, sessions expire."""
        with self.store.lock:
            self.store.settle_funds()
            checkout.expire_due(self.store)

    # ---- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path: str = scope["path"]
        if path.startswith("/v1/"):
            await self._api(scope, body, send)
        elif path.startswith("/_emulator/"):
            await self._control(scope, body, send)
        else:
            await _send(send, 404, _json(_unrecognized(scope["method"], path).body()))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.webhooks.start()
                self._ticker = asyncio.create_task(self._tick_forever())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._ticker is not None:
                    self._ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._ticker
                await self.webhooks.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:  # a bug here must not stop time
                log.exception("emulator tick failed")

    # ---- /v1 -----------------------------------------------------------------------------------

    async def _api(self, scope: Scope, body: bytes, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        matched = self.api.match(method, path)
        self.stats.count(method, matched[0].template if matched else "<unrecognized>")
        decision = self.faults.decide(method, path)
        if decision.latency:
            await asyncio.sleep(decision.latency)
        kind = decision.kind
        if kind in ("429", "rate_limited"):
            await _send(send, 429, _json(RATE_LIMITED.body()))
            return
        if kind == "500":
            headers = [("stripe-should-retry", "true")]
            await _send(send, 500, _json(SERVER_ERROR.body()), headers)
            return
        if kind == "drop":
            await _drop(send)
            return
        if kind == "timeout":
            await asyncio.sleep(decision.timeout_seconds)
            await _drop(send)
            return
        status, payload, headers = self._execute(scope, body, matched)
        if kind == "drop_after_commit":
            await _drop(send)
            return
        if kind == "timeout_after_commit":
            await asyncio.sleep(decision.timeout_seconds)
            await _drop(send)
            return
        await _send(send, status, payload, headers)

    def _execute(
        self, scope: Scope, body: bytes, matched: tuple[Route, dict[str, str]] | None
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = f"req_{next(self._request_numbers):014d}"
        out = [
            ("request-id", request_id),
            ("stripe-version", headers.get("stripe-version", API_VERSION)),
        ]
        api_key = _api_key(headers.get("authorization", ""))
        if api_key is None:
            message = NO_KEY if not headers.get("authorization") else "Invalid API Key provided."
            return 401, _json(StripeError(message, status=401).body()), out
        if matched is None:
            error = _unrecognized(method, scope["path"])
            return 404, _json(error.body()), out
        route, path_params = matched
        idempotency_key = headers.get("idempotency-key") if method == "POST" else None
        if idempotency_key:
            out.append(("idempotency-key", idempotency_key))
        try:
            raw = body if method == "POST" else scope.get("query_string", b"")
            params = parse_form(raw)
        except StripeError as exc:
            return exc.status, _json(exc.body()), out
        with self.store.lock:
            fingerprint = ""
            if idempotency_key:
                fingerprint = json.dumps([method, scope["path"], params], sort_keys=True)
                record = self.store.idempotency.get((api_key, idempotency_key))
                if record is not None:
                    return self._replay(record, fingerprint, idempotency_key, out)
            self.tick()
            ctx = Ctx(
                method=method,
                path=scope["path"],
                path_params=path_params,
                params=params,
                headers=headers,
                query={},
                base_url=_base_url(scope, headers),
                store=self.store,
                app=self,
                stripe_account=headers.get("stripe-account"),
            )
            self.store.request_id = request_id
            self.store.request_idempotency_key = idempotency_key
            store_result = True
            try:
                result = route.handler(ctx)
                assert isinstance(result, dict), "API handlers return Stripe objects"
                status, payload = 200, _json(result)
            except StripeError as exc:
                status, payload = exc.status, _json(exc.body())
                store_result = not exc.is_validation and self.config.idempotency_store_errors
            except Exception:
                log.exception("emulator handler failed: %s %s", method, scope["path"])
                status, payload = 500, _json(SERVER_ERROR.body())
                store_result = False
            finally:
                self.store.request_id = None
                self.store.request_idempotency_key = None
            if idempotency_key and store_result:
                self.store.idempotency[(api_key, idempotency_key)] = IdempotencyRecord(
                    fingerprint, status, payload
                )
        return status, payload, out

    def _replay(
        self,
        record: IdempotencyRecord,
        fingerprint: str,
        key: str,
        out: list[tuple[str, str]],
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        if record.fingerprint != fingerprint:
            self.stats.idempotency_conflicts += 1
            error = StripeError(
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
            return 400, _json(error.body()), out
        self.stats.idempotent_replays += 1
        return record.status, record.body, [*out, ("idempotent-replayed", "true")]

    # ---- /_emulator ----------------------------------------------------------------------------

    async def _control(self, scope: Scope, body: bytes, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        matched = self.control.match(method, path)
        if matched is None:
            error = ControlError(f"no control endpoint {method} {path}", 404)
            await _send(send, 404, _json(error.body()))
            return
        route, path_params = matched
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            params = json.loads(body) if body.strip() else {}
            if not isinstance(params, dict):
                raise ControlError("the body must be a JSON object")
            ctx = Ctx(
                method=method,
                path=path,
                path_params=path_params,
                params=params,
                headers=headers,
                query=query,
                base_url=_base_url(scope, headers),
                store=self.store,
                app=self,
            )
            if route.is_async:
                result = await route.handler(ctx)  # type: ignore[misc]
            else:
                with self.store.lock:
                    self.tick()
                    result = route.handler(ctx)
        except json.JSONDecodeError:
            await _send(send, 400, _json(ControlError("invalid JSON body").body()))
            return
        except ControlError as exc:
            await _send(send, exc.status, _json(exc.body()))
            return
        except StripeError as exc:
            await _send(send, exc.status, _json(ControlError(exc.message, exc.status).body()))
            return
        if isinstance(result, Resp):
            payload = result.raw if result.raw is not None else _json(result.body)
            await _send(send, result.status, payload, result.headers, result.content_type)
        else:
            await _send(send, 200, _json(result))


# ---- helpers -------------------------------------------------------------------------------------


def _api_key(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    key = None
    if scheme.lower() == "bearer":
        key = value.strip()
    elif scheme.lower() == "basic":
        with contextlib.suppress(ValueError):
            key = base64.b64decode(value).decode().partition(":")[0]
    return key if key and key.startswith("sk_") else None


def _unrecognized(method: str, path: str) -> StripeError:
    return StripeError(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
        "can help at https://support.stripe.com/.",
        status=404,
    )


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(
    send: Send,
    status: int,
    payload: bytes,
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> None:
    raw_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw_headers += [(k.encode(), v.encode("latin-1")) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


async def _drop(send: Send) -> None:
    """Close the connection without any answer, as a crashed server or network would.

    Uvicorn gives an ASGI app no way to abort its connection, but its `send` is a bound method of
    the request cycle, which holds the transport. Once the transport is closed uvicorn notices the
    disconnect and sends nothing. Fallback: start a response and break it off (the client still
    sees a protocol error, not a Stripe answer).
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.close()
        # Let connection_lost run so uvicorn marks the cycle disconnected before we return.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"100")],
        }
    )
    raise ConnectionAbortedError("emulated connection drop")
