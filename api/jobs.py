"""The background jobs of ``serve`` and ``worker``: the payouts release and payout runs,
the webhook retry, and settling cancelled sessions.

Each run that succeeds stamps ``job_runs`` (database time), so ``GET /metrics`` of
any replica tells when each job last succeeded in any worker. A failed run is
logged and the next interval tries again; it never stops the scheduler.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from core.inbox import process_due
from core.outbox.delivery import DeliveryConfig
from core.outbox.loop import deliver_due
from payouts.jobs import CycleResult, run_payout_job, run_release_job
from payouts.scheduler import PAYOUT_JOB_ID, RELEASE_JOB_ID, ScheduledJob, build_scheduler
from sessions.cancellation import settle_owed

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger(__name__)
WEBHOOK_RETRY_JOB_ID = "webhooks.retry"
CANCELLED_SESSIONS_JOB_ID = "sessions.cancelled.settle"
_RECORD_SUCCESS = text(
    "INSERT INTO job_runs (job_id, last_success_at) VALUES (:job, now())"
    " ON CONFLICT (job_id) DO UPDATE SET last_success_at ="
    " greatest(job_runs.last_success_at, excluded.last_success_at)"
)

OUTBOX_JOB_ID = "outbox.deliver"  # every second; each run sends until nothing is due


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


async def settle_cancelled_sessions(runtime: Runtime) -> int:
    """Close or refund what cancelled sessions still owe (Stripe was down, a crash)."""
    ctx = runtime.context
    report = await settle_owed(ctx.factory, gateway=ctx.gateway, clock=ctx.clock)
    done = len(report.refunded) + len(report.closed)
    if done or report.refused:
        log.info(
            "cancelled sessions: %s refunded, %s closed, %s waiting on Stripe, %s refused",
            len(report.refunded), len(report.closed), len(report.waiting), len(report.refused),
        )  # fmt: skip
    return done


async def record_success(runtime: Runtime, job_id: str) -> None:
    async with runtime.context.factory() as db, db.begin():
        await db.execute(_RECORD_SUCCESS, {"job": job_id})


def recorded(
    runtime: Runtime, job_id: str, run: Callable[[], Awaitable[object]], seconds: int
) -> ScheduledJob:
    """``run`` every ``seconds`` as the job ``job_id``: failures logged, successes stamped."""

    async def job() -> None:
        try:
            await run()
        except Exception:  # the next run tries again; never kill the scheduler
            log.exception("job %s failed", job_id)
            return
        try:
            await record_success(runtime, job_id)
        except Exception as exc:
            log.warning("job %s: could not record its success: %s", job_id, exc)

    return ScheduledJob(job_id, job, seconds)


def start_scheduler(runtime: Runtime) -> AsyncIOScheduler:
    """Build and start the scheduler on the running loop; the caller shuts it down."""
    ctx = runtime.context
    settings = ctx.settings
    seconds = settings.webhook_retry_interval_seconds

    async def release() -> None:
        await run_release_job(ctx.factory, clock=ctx.clock, settings=settings)

    async def pay() -> None:
        await run_payout_job(ctx.factory, gateway=ctx.gateway, clock=ctx.clock, settings=settings)

    # The release and payout jobs replace build_scheduler's own wrappers (same ids,
    # replace_existing): those log a failure and return, so a success could not be
    # told from it there.
    async def cancelled() -> None:
        await settle_cancelled_sessions(runtime)

    async def webhooks() -> None:
        await retry_webhooks(runtime)

    async def outbox_job() -> None:
        await deliver_due(
            ctx.factory, clock=ctx.clock, config=DeliveryConfig.from_settings(ctx.settings)
        )

    extra = [
        recorded(runtime, RELEASE_JOB_ID, release, settings.release_interval_seconds),
        recorded(runtime, PAYOUT_JOB_ID, pay, settings.payout_interval_seconds),
        recorded(runtime, CANCELLED_SESSIONS_JOB_ID, cancelled, seconds),
        recorded(runtime, OUTBOX_JOB_ID, outbox_job, 1),
    ]
    if runtime.webhook_processing != "off":
        # With processing "off" the runtime drains the inbox continuously, due
        # retries included (core.inbox.drain): a retry job would only compete
        # with it for the same rows.
        extra.append(recorded(runtime, WEBHOOK_RETRY_JOB_ID, webhooks, seconds))
    scheduler = build_scheduler(
        ctx.factory,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=settings,
        extra_jobs=extra,
    )
    scheduler.start()
    return scheduler


def cycle_summary(result: CycleResult) -> list[str]:
    """What ``coachpay payouts run`` (and the demo) say about a release + payout cycle."""
    lines = []
    rel, pay = result.release, result.payouts
    if rel.ran:
        cancelled = f" ({rel.cancelled} cancelled)" if rel.cancelled else ""
        lines.append(f"released {rel.released} earnings{cancelled}")
    else:
        lines.append("release skipped: another process is running it")
    if not pay.ran:
        lines.append("payouts skipped: another process is running them")
    else:
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(pay.outcomes.items()) if n)
        lines.append(f"{pay.created} payouts created" + (f": {outcomes}" if outcomes else ""))
        held = ", ".join(f"{n} {why}" for why, n in sorted(pay.not_created.items()) if n)
        if held:
            lines.append(f"not paid out: {held}")
    errors = rel.errors + pay.errors
    if errors:
        lines.append(f"{errors} errors (see the log)")
    return lines


def cycle_json(result: CycleResult) -> dict[str, object]:
    rel, pay = result.release, result.payouts
    return {
        "release": dataclasses.asdict(rel),
        "payouts": {
            "ran": pay.ran,
            "shards": pay.shards,
            "created": pay.created,
            "outcomes": dict(pay.outcomes),
            "not_created": dict(pay.not_created),
            "errors": pay.errors,
        },
    }
