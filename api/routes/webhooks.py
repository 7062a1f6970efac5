"""Stripe webhook endpoints: verify, store once, answer fast, process after the response."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.background_tasks import BackgroundTask

from api.context import AppContext
from api.deps import AppCtx
from core.inbox import Endpoint, process_event, store_event
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
    async with ctx.factory() as db, db.begin():
        row_id = await store_event(db, event=event, endpoint=endpoint, now=ctx.clock.now())
    is_new = row_id is not None
    log.info(
        "stripe event received",
        extra={"event_id": event.id, "type": event.type, "endpoint": endpoint, "new": is_new},
    )
    receipt = WebhookReceipt(received=True, duplicate=not is_new)
    if row_id is None or ctx.webhook_processing == "off":
        return Response(receipt, status_code=200)
    args = (ctx.factory, ctx.registry, ctx.handler_context, row_id)
    if ctx.webhook_processing == "inline":
        await process_event(*args)
        return Response(receipt, status_code=200)
    # A failure here is recorded on the row and retried by the job.
    return Response(receipt, status_code=200, background=BackgroundTask(process_event, *args))


@post("/webhooks/stripe", status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES)
async def platform_webhook(
    request: Request[Any, Any, Any], ctx: AppCtx
) -> Response[WebhookReceipt]:
    return await _receive(request, ctx, "platform")


@post("/webhooks/stripe/connect", status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES)
async def connect_webhook(request: Request[Any, Any, Any], ctx: AppCtx) -> Response[WebhookReceipt]:
    return await _receive(request, ctx, "connect")


router = Router(path="/v1", route_handlers=[platform_webhook, connect_webhook])
