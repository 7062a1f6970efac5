"""The background jobs of ``serve`` and ``worker``: the payouts scheduler, the webhook
retry, and settling cancelled sessions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.inbox import process_due
from core.outbox.loop import deliver_due
from payouts.scheduler import ScheduledJob, build_scheduler
from sessions.cancellation import settle_owed

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger(__name__)
WEBHOOK_RETRY_JOB_ID = "webhooks.retry"
CANCELLED_SESSIONS_JOB_ID = "sessions.cancelled.settle"
OUTBOX_JOB_ID = "outbox.deliver"  # every second; each run sends until nothing is due


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


async def settle_cancelled_sessions(runtime: Runtime) -> int:
    """Close or refund what cancelled sessions still owe (Stripe was down, a crash)."""
    ctx = runtime.context
    try:
        report = await settle_owed(ctx.factory, gateway=ctx.gateway, clock=ctx.clock)
    except Exception:  # the next run tries again; never kill the scheduler
        log.exception("cancelled-session settle job failed")
        return 0
    done = len(report.refunded) + len(report.closed)
    if done or report.refused:
        log.info(
            "cancelled sessions: %s refunded, %s closed, %s waiting on Stripe, %s refused",
            len(report.refunded), len(report.closed), len(report.waiting), len(report.refused),
        )  # fmt: skip
    return done


def start_scheduler(runtime: Runtime) -> AsyncIOScheduler:
    """Build and start the scheduler on the running loop; the caller shuts it down."""
    ctx = runtime.context
    seconds = ctx.settings.webhook_retry_interval_seconds

    async def webhook_job() -> None:
        await retry_webhooks(runtime)

    async def cancelled_job() -> None:
        await settle_cancelled_sessions(runtime)

    async def outbox_job() -> None:
        await deliver_due(ctx.factory, clock=ctx.clock)

    extra = [
        ScheduledJob(CANCELLED_SESSIONS_JOB_ID, cancelled_job, seconds),
        ScheduledJob(OUTBOX_JOB_ID, outbox_job, 1),
    ]
    if runtime.webhook_processing != "off":
        # With processing "off" the runtime drains the inbox continuously, due
        # retries included (core.inbox.drain): a retry job would only compete
        # with it for the same rows.
        extra.append(ScheduledJob(WEBHOOK_RETRY_JOB_ID, webhook_job, seconds))
    scheduler = build_scheduler(
        ctx.factory,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
        extra_jobs=extra,
    )
    scheduler.start()
    return scheduler
