"""Is a coach's payout schedule due?

Calendar periods in UTC, relative to the last payout: a payout is due when
there was none yet, or the last one was made before the start of the current
period. ``instant``: every run; ``daily``: once per day (from midnight);
``weekly``: once per week (from Monday 00:00); ``monthly``: once per month
(from the 1st, 00:00). A run that was missed (the worker was down on Monday)
catches up on the next run of the same period, as a person would expect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connect.models import PayoutSchedule


def period_start(schedule: str, now: datetime) -> datetime | None:
    """Start of the period containing ``now``; ``None`` for ``instant`` (no period)."""
    if schedule == PayoutSchedule.INSTANT:
        return None
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if schedule == PayoutSchedule.DAILY:
        return day
    if schedule == PayoutSchedule.WEEKLY:
        return day - timedelta(days=day.weekday())  # Monday is 0
    if schedule == PayoutSchedule.MONTHLY:
        return day.replace(day=1)
    raise ValueError(f"unknown payout schedule {schedule!r}")


def is_due(schedule: str, *, last_payout_at: datetime | None, now: datetime) -> bool:
    start = period_start(schedule, now)
    if start is None or last_payout_at is None:
        return True
    return last_payout_at < start
