"""Stripe webhook endpoints: verify, store once, answer fast, process after the response.

``COACHPAY_WEBHOOK_PROCESSING``: "background" (default) processes each new
event in this process right after the 200; "off" only stores it (due at once)
for ``coachpay worker``; "inline" processes it before answering.

The receive path is the hottest in the app (Stripe's bursts), so a POST to
exactly one of the two paths is served by ``WebhookFastPath``, a plain ASGI
handler in front of Litestar that does only what the route needs: read the
body within the limit, verify the signature (``verify_event_head``), store
the row (``InboxReceiver``: group commit, answered only once committed),
answer. Everything else on these paths (another method, a trailing slash, a
bad Content-Length) goes to the Litestar routes below, which share
``receive_delivery``, so both give the same answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar import MediaType, Request, Response, Router, post
from litestar.background_tasks import BackgroundTask
from litestar.types import ASGIApp, Receive, Scope, Send

from api.logs import current_request_id
from core.errors import DomainError
from core.inbox import FIRST_RETRY_DELAY, Endpoint, process_event
from core.inbox_receive import InboxUnavailable, Receipt
from core.stripe_webhooks import parse_event, verify_event_head

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 1024 * 1024  # Stripe's events are far smaller
SIGNATURE_TOLERANCE_SECONDS = 300
PLATFORM_PATH = "/v1/webhooks/stripe"
CONNECT_PATH = "/v1/webhooks/stripe/connect"
_ENDPOINTS: dict[str, Endpoint] = {PLATFORM_PATH: "platform", CONNECT_PATH: "connect"}


class WebhookReceipt(msgspec.Struct):
    received: bool
    duplicate: bool


_encode = msgspec.json.encode
_NEW = _encode(WebhookReceipt(received=True, duplicate=False))
_DUPLICATE = _encode(WebhookReceipt(received=True, duplicate=True))


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # JSON
    after: Callable[[], Awaitable[object]] | None = None  # run once the answer is sent


def _error(status: int, error: str, detail: str) -> Answer:
    return Answer(status, _encode({"error": error, "detail": detail}))


async def receive_delivery(
    runtime: Runtime, endpoint: Endpoint, payload: bytes, sig_header: str | None
) -> Answer:
    """Verify and store one delivery; the answer, and what to run after it is sent."""
    ctx = runtime.context
    settings = ctx.settings
    secret = (
        settings.stripe_connect_webhook_secret
        if endpoint == "connect"
        else settings.stripe_webhook_secret
    ).get_secret_value()
    try:
        head = verify_event_head(payload, sig_header, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
    except DomainError as exc:  # WebhookSignatureInvalid, WebhookPayloadInvalid
        return _error(400, type(exc).__name__, exc.detail)
    mode = ctx.webhook_processing
    now = ctx.clock.now()
    # Nobody here will process it with "off": let the worker take it at once.
    due = now + (timedelta(0) if mode == "off" else FIRST_RETRY_DELAY)
    receipt = Receipt(
        head.id, endpoint, head.type, head.account, head.livemode,
        payload.decode(),  # verified, so valid UTF-8
        now, due,
    )  # fmt: skip
    try:
        row_id = await runtime.inbox.store(receipt)
    except DomainError as exc:  # a row PostgreSQL refuses (WebhookPayloadInvalid)
        return _error(400, type(exc).__name__, exc.detail)
    except InboxUnavailable as exc:
        log.warning("stripe event %s not stored: %s", head.id, exc)
        return _error(503, "ServiceUnavailable", "the webhook inbox is unavailable; retry later")
    # DEBUG: at hundreds of events a second, a line per delivery is most of the
    # log and a measurable share of the CPU; failures are logged by the inbox.
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "stripe event received",
            extra={"event_id": head.id, "type": head.type, "endpoint": endpoint,
                   "new": row_id is not None},
        )  # fmt: skip
    if row_id is None:
        return Answer(200, _DUPLICATE)
    if mode == "off":
        return Answer(200, _NEW)
    if head.type not in ctx.registry:
        # No handler: the mark is the only effect, batched with the others'.
        async def ignore() -> object:
            return await runtime.inbox.ignore(row_id, ctx.clock.now())

        if mode == "inline":
            await ignore()
            return Answer(200, _NEW)
        return Answer(200, _NEW, after=ignore)

    async def process() -> object:
        # A failure here is recorded on the row and retried by the job.
        event = parse_event(payload)
        return await process_event(
            ctx.factory, ctx.registry, ctx.handler_context, row_id, event=event
        )

    if mode == "inline":
        await process()
        return Answer(200, _NEW)
    return Answer(200, _NEW, after=process)


class WebhookFastPath:
    """ASGI: POST /v1/webhooks/stripe[/connect] served here, everything else by ``app``."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self._app = app
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _ENDPOINTS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None or scope.get("method") != "POST" or not self._runtime.started:
            await self._app(scope, receive, send)
            return
        length: int | None = None
        signature: str | None = None
        for key, value in scope["headers"]:
            if key == b"content-length" and length is None:
                try:
                    length = int(value)
                except ValueError:
                    length = -1
            elif key == b"stripe-signature" and signature is None:
                signature = value.decode("latin-1")
        if length is not None and not 0 <= length <= MAX_WEBHOOK_BYTES:
            await self._app(scope, receive, send)  # Litestar's own 400/413, nothing read yet
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender is gone: nothing to answer, nothing stored
            chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
            size += len(chunk)
            if size > MAX_WEBHOOK_BYTES:
                answer = _error(413, "PayloadTooLarge", "Request Entity Too Large")
                await _send(send, answer)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            answer = await receive_delivery(self._runtime, endpoint, payload, signature)
        except Exception as exc:
            request_id = current_request_id() or "-"
            log.error("unhandled %s on POST %s (request id %s)", type(exc).__name__,
                      scope["path"], request_id, exc_info=exc)  # fmt: skip
            answer = _error(500, "InternalError", f"request id {request_id}")
        await _send(send, answer)
        if answer.after is not None:
            try:
                await answer.after()
            except Exception:
                log.exception("processing after the answer failed (the retry job will)")


async def _send(send: Send, answer: Answer) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(answer.body)),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


async def _receive(request: Request[Any, Any, Any], endpoint: Endpoint) -> Response[WebhookReceipt]:
    payload = await request.body()  # raw bytes: the signature covers them exactly
    runtime: Runtime = request.app.state["runtime"]
    answer = await receive_delivery(
        runtime, endpoint, payload, request.headers.get("stripe-signature")
    )
    background = BackgroundTask(answer.after) if answer.after is not None else None
    return Response(
        cast(Any, answer.body),  # JSON already: a WebhookReceipt or an error body
        status_code=answer.status,
        media_type=MediaType.JSON,
        background=background,
    )


@post(PLATFORM_PATH.removeprefix("/v1"), status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES)
async def platform_webhook(request: Request[Any, Any, Any]) -> Response[WebhookReceipt]:
    return await _receive(request, "platform")


@post(CONNECT_PATH.removeprefix("/v1"), status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES)
async def connect_webhook(request: Request[Any, Any, Any]) -> Response[WebhookReceipt]:
    return await _receive(request, "connect")


router = Router(path="/v1", route_handlers=[platform_webhook, connect_webhook])
