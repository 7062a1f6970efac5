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

SCHEDULES = ("instant", "daily", "weekly", "monthly")


def period_start(schedule: str, now: datetime) -> datetime | None:
    """Start of the period containing ``now``; ``None`` for ``instant`` (no period)."""
    if schedule == "instant":
        return None
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if schedule == "daily":
        return day
    if schedule == "weekly":
        return day - timedelta(days=day.weekday())  # Monday is 0
    if schedule == "monthly":
        return day.replace(day=1)
    raise ValueError(f"unknown payout schedule {schedule!r}")


def is_due(schedule: str, *, last_payout_at: datetime | None, now: datetime) -> bool:
    start = period_start(schedule, now)
    if start is None or last_payout_at is None:
        return True
    return last_payout_at < start


def next_due(schedule: str, *, last_payout_at: datetime | None, now: datetime) -> datetime:
    """When the schedule next allows a payout (``now`` if it does already)."""
    if is_due(schedule, last_payout_at=last_payout_at, now=now):
        return now
    start = period_start(schedule, now)
    assert start is not None  # instant is always due
    if schedule == "daily":
        return start + timedelta(days=1)
    if schedule == "weekly":
        return start + timedelta(days=7)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)
