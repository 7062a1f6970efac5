"""Coach profile settings (fee, hold, payout schedule, minimum, pause) and what payouts read.

Other packages read these fields straight from ``CoachProfile`` (``fee_bps``,
``hold_hours``, ``payout_schedule``, ``minimum_payout``, ``payouts_paused``)
or through ``payout_eligibility``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.errors import CoachNotFound, InvalidProfileChange
from connect.models import CoachProfile, ConnectAccount, PauseSource, PayoutSchedule
from core import audit
from core.money import CURRENCIES, MAX_AMOUNT

PAYOUT_SCHEDULES = tuple(PayoutSchedule)
MAX_FEE_BPS = 10_000
MAX_HOLD_HOURS = 2160  # 90 days
MAX_REASON_LENGTH = 500
EDITABLE_FIELDS = frozenset(
    {
        "fee_bps",
        "hold_hours",
        "payout_schedule",
        "minimum_payout",
        "payouts_paused",
        "payouts_paused_reason",
    }
)


# The refusal backoff (payouts/refusals.py sets payout_retry_at): no new payout
# for the coach before it. Written once, in both forms side by side: the SQL
# every payout statement embeds (``p`` is the coach's coach_profiles row,
# ``:now`` the run's time: payouts/sql.py, payouts/jobs.py) and the Python of
# ``payout_eligibility``; tests/payouts/test_backoff_paths.py holds them to
# one verdict.
BACKOFF_OVER_SQL = "(p.payout_retry_at IS NULL OR p.payout_retry_at <= CAST(:now AS timestamptz))"


def backoff_over(retry_at: datetime | None, now: datetime) -> bool:
    return retry_at is None or retry_at <= now


def backoff_reason(refusals: int, retry_at: datetime | None) -> str:
    when = retry_at.isoformat() if retry_at is not None else "-"
    return f"backing off after {refusals} refused transfer(s) until {when}"


def clear_refusal_backoff(profile: CoachProfile) -> None:
    """Resuming payouts starts afresh: the refusals before the pause no longer count."""
    profile.payout_refusals = 0
    profile.payout_retry_at = None
    profile.payout_last_refusal = None


async def get_profile(
    db: AsyncSession, coach_id: int, *, for_update: bool = False
) -> CoachProfile | None:
    stmt = select(CoachProfile).where(CoachProfile.user_id == coach_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await db.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()


def _int_in(field: str, value: object, lo: int, hi: int) -> int:
    # bool is an int subclass: `true` is not a fee rate.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidProfileChange(f"{field} must be an integer", field=field)
    if not lo <= value <= hi:
        raise InvalidProfileChange(f"{field} must be between {lo} and {hi}", field=field)
    return value


def _minimum_payout(value: object) -> dict[str, int]:
    field = "minimum_payout"
    if not isinstance(value, Mapping):
        raise InvalidProfileChange(
            "minimum_payout must be an object of currency -> minor units", field=field
        )
    out: dict[str, int] = {}
    for currency, amount in value.items():
        if not isinstance(currency, str) or currency not in CURRENCIES:
            raise InvalidProfileChange(
                f"unknown currency {currency!r} (lowercase ISO 4217)", field=field
            )
        out[currency] = _int_in(f"minimum_payout.{currency}", amount, 0, MAX_AMOUNT)
    return out


def _reason(value: object) -> str | None:
    field = "payouts_paused_reason"
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidProfileChange("payouts_paused_reason must be a string", field=field)
    value = value.strip()
    if len(value) > MAX_REASON_LENGTH:
        raise InvalidProfileChange(
            f"payouts_paused_reason is longer than {MAX_REASON_LENGTH} characters", field=field
        )
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidProfileChange(
            "payouts_paused_reason must not contain control characters", field=field
        )
    return value or None


def validate_changes(changes: Mapping[str, object]) -> dict[str, Any]:
    """Checked, normalised changes; raises InvalidProfileChange on the first bad one."""
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidProfileChange("nothing to change")
    unknown = sorted(str(k) for k in changes if k not in EDITABLE_FIELDS)
    if unknown:
        raise InvalidProfileChange(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    out: dict[str, Any] = {}
    for field, value in changes.items():
        if field == "fee_bps":
            out[field] = _int_in(field, value, 0, MAX_FEE_BPS)
        elif field == "hold_hours":
            out[field] = _int_in(field, value, 0, MAX_HOLD_HOURS)
        elif field == "payout_schedule":
            if value not in PAYOUT_SCHEDULES:
                raise InvalidProfileChange(
                    f"payout_schedule must be one of {', '.join(PAYOUT_SCHEDULES)}", field=field
                )
            out[field] = value
        elif field == "minimum_payout":
            out[field] = _minimum_payout(value)
        elif field == "payouts_paused":
            if not isinstance(value, bool):
                raise InvalidProfileChange("payouts_paused must be true or false", field=field)
            out[field] = value
        else:
            out[field] = _reason(value)
    return out


def _snapshot(profile: CoachProfile) -> dict[str, Any]:
    return {f: getattr(profile, f) for f in sorted(EDITABLE_FIELDS)}


async def update_profile(
    db: AsyncSession,
    *,
    coach_id: int,
    changes: Mapping[str, object],
    actor_id: int,
    now: datetime,
    cause: str | None = None,
) -> CoachProfile:
    """Apply an admin's changes to a coach profile, all or nothing, audited.

    ``minimum_payout`` replaces the whole per-currency map. Pausing needs a
    reason (so finance knows why money is waiting); unpausing clears it.
    """
    valid = validate_changes(changes)
    profile = await get_profile(db, coach_id, for_update=True)
    if profile is None:
        raise CoachNotFound(f"no coach profile {coach_id}")
    before = _snapshot(profile)
    paused = valid.get("payouts_paused", profile.payouts_paused)
    reason = valid.get("payouts_paused_reason", profile.payouts_paused_reason)
    if paused and not reason:
        raise InvalidProfileChange(
            "paused payouts need a payouts_paused_reason", field="payouts_paused_reason"
        )
    if not paused:
        if valid.get("payouts_paused_reason"):
            raise InvalidProfileChange(
                "payouts_paused_reason only applies while payouts are paused",
                field="payouts_paused_reason",
            )
        valid["payouts_paused_reason"] = None
    was_paused = profile.payouts_paused
    for field, value in valid.items():
        setattr(profile, field, value)
    if paused and not was_paused:
        profile.payouts_paused_by = PauseSource.ADMIN
    elif not paused:
        profile.payouts_paused_by = None
        if was_paused:
            clear_refusal_backoff(profile)
    after = _snapshot(profile)
    if after != before:
        profile.updated_at = now
        await audit.record(
            db,
            actor_kind="user",
            actor_user_id=actor_id,
            action="coach_profile.updated",
            entity_type="coach_profile",
            entity_id=coach_id,
            at=now,
            before={k: v for k, v in before.items() if after[k] != v},
            after={k: v for k, v in after.items() if before[k] != v},
            cause=cause,
        )
    await db.flush()
    return profile


@dataclass(frozen=True, slots=True)
class PayoutEligibility:
    """Everything the payout job checks about a coach, in one read.

    ``eligible`` covers the coach side only (account can receive transfers,
    payouts enabled, not paused, not backing off after refused transfers
    when ``now`` is given); the schedule and the minimum are the payout job's
    to apply per currency (``minimum_for``).
    """

    coach_id: int
    eligible: bool
    reason: str | None
    stripe_account_id: str | None
    payout_schedule: str
    minimum_payout: dict[str, int]
    payouts_paused: bool
    fee_bps: int
    hold_hours: int
    payouts_paused_by: str | None = None
    payout_refusals: int = 0  # consecutive transfers Stripe refused
    payout_retry_at: datetime | None = None  # no new payout before

    def minimum_for(self, currency: str) -> int:
        return self.minimum_payout.get(currency, 0)


async def payout_eligibility(
    db: AsyncSession, coach_id: int, *, now: datetime | None = None
) -> PayoutEligibility:
    """``now``: the time to judge the refusal backoff at (without it, it is not judged)."""
    profile = await get_profile(db, coach_id)
    if profile is None:
        raise CoachNotFound(f"no coach profile {coach_id}")
    acct = (
        await db.execute(select(ConnectAccount).where(ConnectAccount.coach_id == coach_id))
    ).scalar_one_or_none()
    reason: str | None = None
    if acct is None:
        reason = "no Connect account"
    elif profile.payouts_paused:
        reason = f"payouts paused: {profile.payouts_paused_reason}"
    elif not acct.payouts_enabled:
        reason = "Stripe payouts not enabled"
    elif acct.transfers_capability != "active":
        reason = "transfers capability not active"
    elif acct.status == "disabled":
        reason = "account disabled"
    elif now is not None and not backoff_over(profile.payout_retry_at, now):
        reason = backoff_reason(profile.payout_refusals, profile.payout_retry_at)
    return PayoutEligibility(
        coach_id=coach_id,
        eligible=reason is None,
        reason=reason,
        stripe_account_id=acct.stripe_account_id if acct else None,
        payout_schedule=profile.payout_schedule,
        minimum_payout=dict(profile.minimum_payout or {}),
        payouts_paused=profile.payouts_paused,
        fee_bps=profile.fee_bps,
        hold_hours=profile.hold_hours,
        payouts_paused_by=profile.payouts_paused_by,
        payout_refusals=profile.payout_refusals,
        payout_retry_at=profile.payout_retry_at,
    )
