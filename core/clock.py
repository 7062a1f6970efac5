"""An injectable clock: services take ``now`` from it so holds can be tested.

The demo runs a simulated clock days ahead of the wall clock; it stores how far
ahead in the database (``simulated_clock``), and every later process that uses
the Stripe emulator on that database reads the same time (api.runtime).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, the demo's simulated week)."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = at

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at


class OffsetClock:
    """The wall clock, ``ahead_by`` ahead: the demo's simulated time as every process
    sharing its database reads it (see ``load_simulated_offset``)."""

    def __init__(self, ahead_by: timedelta) -> None:
        self.ahead_by = ahead_by

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead_by


_LOAD_OFFSET = text("SELECT ahead_by FROM simulated_clock WHERE id = 1")
_SAVE_OFFSET = text(
    "INSERT INTO simulated_clock (id, ahead_by, set_at) VALUES (1, :ahead_by, now())"
    " ON CONFLICT (id) DO UPDATE SET ahead_by = excluded.ahead_by, set_at = excluded.set_at"
)


async def load_simulated_offset(db: AsyncSession) -> timedelta | None:
    """How far ahead the demo's clock runs, if a demo set one in this database."""
    ahead_by = (await db.execute(_LOAD_OFFSET)).scalar_one_or_none()
    return ahead_by if isinstance(ahead_by, timedelta) else None


async def save_simulated_offset(db: AsyncSession, ahead_by: timedelta) -> None:
    await db.execute(_SAVE_OFFSET, {"ahead_by": ahead_by})
