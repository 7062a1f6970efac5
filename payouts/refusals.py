"""Transfers Stripe keeps refusing: back off per coach, then pause the coach's payouts.

A refusal (``StripeRefused``: the account cannot receive transfers, say) fails
the payout and returns the money to ``available``; without a brake the next
run would make a new payout, and a new refusal, every time (every 5 minutes,
daily schedule or not: a failed payout does not use up the day). So each
refusal in a row pushes the coach's next payout back (1 h, 2 h, 4 h, ...
capped at 24 h: ``coach_profiles.payout_retry_at``, obeyed by every reserve
path through ``connect.profile.BACKOFF_OVER_SQL``), and the
``COACHPAY_PAYOUT_PAUSE_AFTER_REFUSALS``-th (3) pauses the coach's payouts (``PauseSource.
TRANSFER_REFUSALS``) until an admin resumes them. A paid transfer resets the
count (payouts/sql.py, in the settle statements).

Not refusals: an unknown outcome (retried with the same key), platform funds
short (``waiting_funds``), our own key or idempotency mistakes: none of them
says anything about the coach's account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import PauseSource
from core.settings import Settings
from payouts.admin import MAX_REASON, set_paused

# The default of COACHPAY_PAYOUT_PAUSE_AFTER_REFUSALS; the code reads the settings
# it is passed (COACHPAY_PAYOUT_REFUSAL_BACKOFF_BASE_MINUTES and _CAP_HOURS too).
PAUSE_AFTER_REFUSALS: int = Settings.model_fields["payout_pause_after_refusals"].default
_MAX_TEXT = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_COUNT = text(
    "UPDATE coach_profiles SET payout_refusals = payout_refusals + 1, "
    "payout_last_refusal = :message, updated_at = :now WHERE user_id = :c "
    "RETURNING payout_refusals, payouts_paused"
)
_RETRY_AT = text("UPDATE coach_profiles SET payout_retry_at = :at WHERE user_id = :c")


def refusal_backoff(refusals: int, settings: Settings) -> timedelta:
    """1 h after the first refusal in a row, doubling, capped at 24 h (the defaults)."""
    exponent = min(max(refusals - 1, 0), 16)
    base = timedelta(minutes=settings.payout_refusal_backoff_base_minutes)
    return min(base * 2**exponent, timedelta(hours=settings.payout_refusal_backoff_cap_hours))


@dataclass(frozen=True, slots=True)
class RefusalState:
    refusals: int  # in a row, this one included
    retry_at: datetime
    paused_now: bool  # this refusal paused the coach's payouts

    def note(self) -> str:
        """What the failed payout tells the coach (and finance) beyond Stripe's reason."""
        if self.paused_now:
            return (
                f"payouts paused after {self.refusals} refused transfers in a row; "
                "an admin resumes them once the account can receive transfers"
            )
        when = f"{self.retry_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return f"refused {self.refusals} time(s) in a row; next try after {when}"


async def record_refusal(
    db: AsyncSession,
    *,
    coach_id: int,
    payout_id: int,
    message: str,
    now: datetime,
    settings: Settings,
) -> RefusalState | None:
    """Count a refused transfer (``None``: no coach profile). Flushes; the caller commits.

    One UPDATE ... RETURNING, so two refusals of one coach at once (two
    currencies) count two, in the order their transactions get the row."""
    clean = _CONTROL.sub(" ", message).strip()
    row = (
        await db.execute(_COUNT, {"c": coach_id, "message": clean[:_MAX_TEXT], "now": now})
    ).one_or_none()
    if row is None:
        return None
    refusals, already_paused = int(row.payout_refusals), bool(row.payouts_paused)
    retry_at = now + refusal_backoff(refusals, settings)
    await db.execute(_RETRY_AT, {"c": coach_id, "at": retry_at})
    pause = refusals >= settings.payout_pause_after_refusals and not already_paused
    if pause:
        reason = f"Stripe refused {refusals} transfers in a row: {clean}"
        await set_paused(
            db,
            coach_id=coach_id,
            paused=True,
            reason=reason[:MAX_REASON],
            now=now,
            source=PauseSource.TRANSFER_REFUSALS,
            cause=f"payout {payout_id} refused",
        )
    return RefusalState(refusals, retry_at, paused_now=pause)
