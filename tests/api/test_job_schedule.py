"""Which jobs ``serve``/``worker`` schedule (api.jobs.start_scheduler)."""

from __future__ import annotations

import pytest

from api.jobs import CANCELLED_SESSIONS_JOB_ID, WEBHOOK_RETRY_JOB_ID, start_scheduler
from api.runtime import Runtime
from core.settings import Settings
from payouts.scheduler import PAYOUT_JOB_ID, RELEASE_JOB_ID


@pytest.mark.parametrize(
    ("processing", "retry_job"), [("background", True), ("inline", True), ("off", False)]
)
async def test_the_retry_job_runs_unless_the_inbox_is_drained_continuously(
    api_settings: Settings, processing: str, retry_job: bool
) -> None:
    runtime = Runtime(api_settings, webhook_processing=processing)
    await runtime.start()
    try:
        scheduler = start_scheduler(runtime)
        # Inspected and shut down before this test yields to the loop: no job runs.
        ids = {job.id for job in scheduler.get_jobs()}
        scheduler.shutdown(wait=False)
    finally:
        await runtime.stop()
    assert {RELEASE_JOB_ID, PAYOUT_JOB_ID, CANCELLED_SESSIONS_JOB_ID} <= ids
    assert (WEBHOOK_RETRY_JOB_ID in ids) is retry_job
