"""The background jobs of ``serve`` and ``worker``: the payouts scheduler plus the webhook retry."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.inbox import process_due

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger(__name__)
WEBHOOK_RETRY_JOB_ID = "webhooks.retry"


async def retry_webhooks(runtime: Runtime) -> int:
    """One pass of the inbox retry: events owed work whose time has come."""
    ctx = runtime.context
    done = await process_due(
        ctx.factory,
        ctx.registry,
        ctx.handler_context,
        now=ctx.clock.now(),
        batch=ctx.settings.job_batch_size,
    )
    if done:
        log.info("webhook retry processed %s events", done)
    return done


def _payouts_scheduler(runtime: Runtime) -> AsyncIOScheduler | None:
    try:
        module = importlib.import_module("payouts.scheduler")
        build = module.build_scheduler
    except (ImportError, AttributeError):
        log.warning("payouts.scheduler.build_scheduler is missing: running without payout jobs")
        return None
    ctx = runtime.context
    scheduler: AsyncIOScheduler = build(
        ctx.factory,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
        extra_jobs=[],
    )
    return scheduler


def start_scheduler(runtime: Runtime) -> Any:
    """Build and start the scheduler on the running loop; the caller shuts it down."""
    scheduler = _payouts_scheduler(runtime) or AsyncIOScheduler(timezone="UTC")
    # Added here rather than through extra_jobs so that the inbox job does not
    # depend on how the payouts scheduler describes its own jobs.
    scheduler.add_job(
        retry_webhooks,
        "interval",
        seconds=runtime.settings.webhook_retry_interval_seconds,
        args=[runtime],
        id=WEBHOOK_RETRY_JOB_ID,
        replace_existing=True,
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    return scheduler
