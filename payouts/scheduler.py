"""APScheduler 3.x jobs: release and payouts on their own intervals.

``max_instances=1`` and ``coalesce`` keep one process from piling runs up;
the advisory locks in payouts/jobs.py keep several processes from running
the same job at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from payouts.jobs import run_payout_job, run_release_job

log = logging.getLogger(__name__)
RELEASE_JOB_ID = "payouts.release"
PAYOUT_JOB_ID = "payouts.pay"


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    id: str
    func: Callable[[], Awaitable[object]]
    seconds: int


def build_scheduler(
    factory: async_sessionmaker[AsyncSession],
    *,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    extra_jobs: Sequence[ScheduledJob] = (),
) -> AsyncIOScheduler:
    """A scheduler (not started) with the release and payout jobs, and ``extra_jobs``."""

    async def release() -> None:
        try:
            await run_release_job(factory, clock=clock, settings=settings)
        except Exception:
            log.exception("release job failed")

    async def pay() -> None:
        try:
            await run_payout_job(factory, gateway=gateway, clock=clock, settings=settings)
        except Exception:
            log.exception("payout job failed")

    jobs = [
        ScheduledJob(RELEASE_JOB_ID, release, settings.release_interval_seconds),
        ScheduledJob(PAYOUT_JOB_ID, pay, settings.payout_interval_seconds),
        *extra_jobs,
    ]
    scheduler = AsyncIOScheduler(timezone=UTC)
    for job in jobs:
        scheduler.add_job(
            job.func,
            "interval",
            seconds=job.seconds,
            id=job.id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(job.seconds, 1),
            next_run_time=datetime.now(UTC),  # first run at start, then every interval
        )
    return scheduler
