"""Stripe webhook endpoints: verify, store once, answer fast, process after the response.

``COACHPAY_WEBHOOK_PROCESSING``: "background" (default) processes each new
event in this process right after the 200; "off" only stores it (due at once)
for ``coachpay worker``; "inline" processes it before answering.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.background_tasks import BackgroundTask

from api.context import AppContext
from api.deps import AppCtx
from core.inbox import FIRST_RETRY_DELAY, Endpoint, process_event, store_received
from core.stripe_webhooks import construct_event

log = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 1024 * 1024  # Stripe's events are far smaller
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookReceipt(msgspec.Struct):
    received: bool
    duplicate: bool


async def _receive(
    request: Request[Any, Any, Any], ctx: AppContext, endpoint: Endpoint
) -> Response[WebhookReceipt]:
    payload = await request.body()  # raw bytes: the signature covers them exactly
    settings = ctx.settings
    secret = (
        settings.stripe_connect_webhook_secret
        if endpoint == "connect"
        else settings.stripe_webhook_secret
    ).get_secret_value()
    event = construct_event(
        payload,
        request.headers.get("stripe-signature"),
        secret,
        tolerance=SIGNATURE_TOLERANCE_SECONDS,
    )
    mode = ctx.webhook_processing
    row_id = await store_received(
        ctx.factory,
        event=event,
        payload=payload.decode(),  # verified above, so valid UTF-8
        endpoint=endpoint,
        now=ctx.clock.now(),
        # Nobody here will process it: let the worker take it at once.
        first_attempt_delay=timedelta(0) if mode == "off" else FIRST_RETRY_DELAY,
    )
    # DEBUG: at hundreds of events a second, a line per delivery is most of the
    # log and a measurable share of the CPU; failures are logged by the inbox.
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "stripe event received",
            extra={"event_id": event.id, "type": event.type, "endpoint": endpoint,
                   "new": row_id is not None},
        )  # fmt: skip
    receipt = WebhookReceipt(received=True, duplicate=row_id is None)
    if row_id is None or mode == "off":
        return Response(receipt, status_code=200)
    args = (ctx.factory, ctx.registry, ctx.handler_context, row_id)
    if mode == "inline":
        await process_event(*args, event=event)
        return Response(receipt, status_code=200)
    # A failure here is recorded on the row and retried by the job.
    task = BackgroundTask(process_event, *args, event=event)
    return Response(receipt, status_code=200, background=task)


@post("/webhooks/stripe", status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES)
async def platform_webhook(
    request: Request[Any, Any, Any], ctx: AppCtx
) -> Response[WebhookReceipt]:
    return await _receive(request, ctx, "platform")


@post("/webhooks/stripe/connect", status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES)
async def connect_webhook(request: Request[Any, Any, Any], ctx: AppCtx) -> Response[WebhookReceipt]:
    return await _receive(request, ctx, "connect")


router = Router(path="/v1", route_handlers=[platform_webhook, connect_webhook])
