"""What an admin does to payouts: pause and resume a coach's, retry a failed one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import CoachProfile, PauseSource
from connect.profile import clear_refusal_backoff
from core.audit import record
from payouts.errors import (
    CoachNotFound,
    InvalidReason,
    NothingToPay,
    PayoutNotFound,
    PayoutNotRetryable,
    PayoutsNotEnabled,
    PayoutsPaused,
)
from payouts.models import FAILED, Payout
from payouts.service import Refusal, reserve

MAX_REASON = 500


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidReason("a reason is needed", field="reason")
    if len(reason) > MAX_REASON:
        raise InvalidReason(f"the reason is longer than {MAX_REASON} characters", field="reason")
    if any(ord(c) < 32 and c not in "\t\n" for c in reason):
        raise InvalidReason("the reason contains control characters", field="reason")
    return reason.strip()


async def _profile(db: AsyncSession, coach_id: int) -> CoachProfile:
    profile = (
        await db.execute(
            select(CoachProfile)
            .where(CoachProfile.user_id == coach_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if profile is None:
        raise CoachNotFound(f"coach {coach_id} not found")
    return profile


async def set_paused(
    db: AsyncSession,
    *,
    coach_id: int,
    paused: bool,
    reason: object,
    now: datetime,
    actor_user_id: int | None = None,
    source: PauseSource | None = None,
    cause: str | None = None,
) -> CoachProfile:
    """Pause (or resume) new payouts. An open payout keeps being resolved: its
    transfer may already exist at Stripe, and leaving it unknown helps nobody.

    ``source``: who pauses (``payouts_paused_by``); by default an admin when
    ``actor_user_id`` is given, else the system. Resuming also clears the
    refusal backoff (payouts/refusals.py): the admin says "try again now"."""
    why = _reason(reason) if paused else (_reason(reason) if reason is not None else None)
    by = source or (PauseSource.ADMIN if actor_user_id is not None else PauseSource.SYSTEM)
    profile = await _profile(db, coach_id)
    before = {
        "payouts_paused": profile.payouts_paused,
        "reason": profile.payouts_paused_reason,
        "paused_by": profile.payouts_paused_by,
        "refusals": profile.payout_refusals,
    }
    profile.payouts_paused = paused
    profile.payouts_paused_reason = why if paused else None
    profile.payouts_paused_by = by.value if paused else None
    if not paused:
        clear_refusal_backoff(profile)
    profile.updated_at = now
    await record(
        db,
        actor_kind="user" if actor_user_id is not None else "system",
        actor_user_id=actor_user_id,
        action="payouts.pause" if paused else "payouts.resume",
        entity_type="coach",
        entity_id=coach_id,
        at=now,
        before=before,
        after={
            "payouts_paused": paused,
            "reason": profile.payouts_paused_reason,
            "paused_by": profile.payouts_paused_by,
        },
        cause=cause or why,
    )
    await db.flush()
    return profile


async def retry_payout(
    db: AsyncSession, *, payout_id: int, now: datetime, actor_user_id: int | None = None
) -> Payout:
    """A failed payout is paid again as a NEW payout (``retry_of``) with its own key.

    Stripe stored the refusal under the old key, so reusing it would only
    replay the refusal. The new payout pays what is available now (the failed
    amount came back to available), ignoring schedule and minimum; the next
    payout run sends it. Each failed payout can be retried once.
    """
    failed = (
        await db.execute(select(Payout).where(Payout.id == payout_id).with_for_update())
    ).scalar_one_or_none()
    if failed is None:
        raise PayoutNotFound(f"payout {payout_id} not found")
    if failed.status != FAILED:
        raise PayoutNotRetryable(f"payout {payout_id} is {failed.status}; only a failed one")
    if (await db.execute(select(Payout.id).where(Payout.retry_of == payout_id))).first():
        raise PayoutNotRetryable(f"payout {payout_id} was retried already")
    made = await reserve(
        db,
        coach_id=failed.coach_id,
        currency=failed.currency,
        now=now,
        force=True,
        retry_of=failed.id,
    )
    if isinstance(made, Refusal):
        if "paused" in made.reason:
            raise PayoutsPaused(made.reason)
        if "Connect" in made.reason:
            raise PayoutsNotEnabled(made.reason)
        raise NothingToPay(made.reason)
    await record(
        db,
        actor_kind="user" if actor_user_id is not None else "system",
        actor_user_id=actor_user_id,
        action="payouts.retry",
        entity_type="payout",
        entity_id=failed.id,
        at=now,
        after={"retry_payout_id": made.id, "amount": made.amount},
    )
    return made
