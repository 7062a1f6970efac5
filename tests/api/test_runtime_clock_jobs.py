"""The demo's simulated clock is every process's clock (with the emulator only), and
scheduled jobs stamp their last success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.jobs import CANCELLED_SESSIONS_JOB_ID, recorded, start_scheduler
from api.runtime import Runtime
from core.clock import OffsetClock, SystemClock
from core.settings import Settings
from payouts.scheduler import PAYOUT_JOB_ID, RELEASE_JOB_ID

AHEAD = timedelta(days=4, hours=6)


async def _store_offset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO simulated_clock (ahead_by) VALUES (:a)"), {"a": AHEAD})


async def test_a_later_process_reads_the_demos_clock(
    api_settings: Settings, clean_engine: AsyncEngine
) -> None:
    await _store_offset(clean_engine)
    # The emulator (no secret key), reached at a URL: nothing else is started.
    settings = api_settings.model_copy(update={"stripe_secret_key": None})
    assert settings.uses_emulator
    runtime = Runtime(settings)
    await runtime.start()
    try:
        clock = runtime.context.clock
    finally:
        await runtime.stop()
    assert isinstance(clock, OffsetClock) and clock.ahead_by == AHEAD
    drift = clock.now() - (datetime.now(UTC) + AHEAD)
    assert abs(drift) < timedelta(minutes=1)


async def test_real_stripe_ignores_a_demo_clock_left_in_the_database(
    api_settings: Settings, clean_engine: AsyncEngine
) -> None:
    await _store_offset(clean_engine)
    assert not api_settings.uses_emulator
    runtime = Runtime(api_settings)
    await runtime.start()
    try:
        assert isinstance(runtime.context.clock, SystemClock)
    finally:
        await runtime.stop()


async def test_no_offset_stored_means_wall_time(
    api_settings: Settings, clean_engine: AsyncEngine
) -> None:
    runtime = Runtime(api_settings.model_copy(update={"stripe_secret_key": None}))
    await runtime.start()
    try:
        assert isinstance(runtime.context.clock, SystemClock)
    finally:
        await runtime.stop()


async def _job_runs(engine: AsyncEngine) -> dict[str, datetime]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT job_id, last_success_at FROM job_runs"))
        return {r[0]: r[1] for r in rows}


async def test_a_job_stamps_its_success_and_not_its_failure(
    api_settings: Settings, clean_engine: AsyncEngine
) -> None:
    runtime = Runtime(api_settings)
    await runtime.start()

    async def works() -> None:
        return None

    async def fails() -> None:
        raise RuntimeError("Stripe is away")

    try:
        await recorded(runtime, "good.job", works, 60).func()
        await recorded(runtime, "bad.job", fails, 60).func()  # logged, not raised
    finally:
        await runtime.stop()
    runs = await _job_runs(clean_engine)
    assert set(runs) == {"good.job"}
    assert abs(runs["good.job"] - datetime.now(UTC)) < timedelta(minutes=1)


async def test_the_scheduled_release_and_payout_jobs_are_the_recorded_ones(
    api_settings: Settings, clean_engine: AsyncEngine
) -> None:
    runtime = Runtime(api_settings)
    await runtime.start()
    try:
        scheduler = start_scheduler(runtime)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        scheduler.shutdown(wait=False)
        # Run each once by hand (an empty marketplace: nothing to release or pay).
        for job_id in (RELEASE_JOB_ID, PAYOUT_JOB_ID, CANCELLED_SESSIONS_JOB_ID):
            await jobs[job_id].func()
    finally:
        await runtime.stop()
    assert {RELEASE_JOB_ID, PAYOUT_JOB_ID, CANCELLED_SESSIONS_JOB_ID} <= set(
        await _job_runs(clean_engine)
    )
