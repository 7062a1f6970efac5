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
    try:
        done = await process_due(
            ctx.factory,
            ctx.registry,
            ctx.handler_context,
            now=ctx.clock.now(),
            batch=ctx.settings.job_batch_size,
        )
    except Exception:  # the next run tries again; never kill the scheduler
        log.exception("webhook retry job failed")
        return 0
    if done:
        log.info("webhook retry processed %s events", done)
    return done


def start_scheduler(runtime: Runtime) -> Any:
    """Build and start the scheduler on the running loop; the caller shuts it down."""
    ctx = runtime.context
    seconds = ctx.settings.webhook_retry_interval_seconds

    async def webhook_job() -> None:
        await retry_webhooks(runtime)

    try:
        module = importlib.import_module("payouts.scheduler")
        build, job_type = module.build_scheduler, module.ScheduledJob
    except (ImportError, AttributeError):
        log.warning("payouts.scheduler is missing: running only the webhook retry job")
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(
            webhook_job,
            "interval",
            seconds=seconds,
            id=WEBHOOK_RETRY_JOB_ID,
            max_instances=1,
            coalesce=True,
        )
    else:
        scheduler = build(
            ctx.factory,
            gateway=ctx.gateway,
            clock=ctx.clock,
            settings=ctx.settings,
            extra_jobs=[job_type(WEBHOOK_RETRY_JOB_ID, webhook_job, seconds)],
        )
    scheduler.start()
    return scheduler
