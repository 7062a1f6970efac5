"""The coach-facing status of a Connect account, derived from Stripe's fields."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class AccountStatus(StrEnum):
    """``connect_accounts.status``: derived from Stripe's fields on every sync
    (``derive_status``), so it has no transitions of its own to check."""

    ONBOARDING = "onboarding"
    PENDING_VERIFICATION = "pending_verification"
    RESTRICTED = "restricted"
    ACTIVE = "active"
    DISABLED = "disabled"


STATUSES: tuple[AccountStatus, ...] = tuple(AccountStatus)

# Reasons after which no amount of onboarding helps: Stripe rejected the
# account, or the platform paused it from its dashboard.
_DISABLED_REASONS = frozenset({"platform_paused"})


def is_disabled_reason(disabled_reason: str | None) -> bool:
    return bool(disabled_reason) and (
        str(disabled_reason).startswith("rejected") or disabled_reason in _DISABLED_REASONS
    )


def derive_status(
    *,
    charges_enabled: bool,
    payouts_enabled: bool,
    details_submitted: bool,
    transfers_capability: str | None,
    currently_due: Sequence[str],
    past_due: Sequence[str],
    disabled_reason: str | None,
) -> AccountStatus:
    """One word for the coach and the payout job, checked in this order:

    1. ``disabled``: ``disabled_reason`` starts with ``rejected`` (``rejected.fraud``,
       ``rejected.other``, ...) or is ``platform_paused``.
    2. ``active``: charges and payouts enabled, the ``transfers`` capability ``active``,
       and nothing currently due or past due.
    3. ``onboarding``: the coach has not submitted the onboarding form yet
       (``details_submitted`` false). Checked before ``restricted`` on purpose:
       Stripe creates every account with its initial requirements already
       ``past_due`` and ``disabled_reason = requirements.past_due``, so without
       this step a coach who has just clicked "start" would read "restricted".
    4. ``restricted``: something is past due, or Stripe gives a (non-rejection)
       ``disabled_reason`` such as ``requirements.past_due`` or ``under_review``.
    5. ``pending_verification``: details submitted, nothing currently due, Stripe
       is still verifying (not yet enabled).
    6. ``onboarding`` otherwise (details submitted but Stripe asks for more now).
    """
    if is_disabled_reason(disabled_reason):
        return AccountStatus.DISABLED
    if (
        charges_enabled
        and payouts_enabled
        and transfers_capability == "active"
        and not currently_due
        and not past_due
    ):
        return AccountStatus.ACTIVE
    if not details_submitted:
        return AccountStatus.ONBOARDING
    if past_due or disabled_reason:
        return AccountStatus.RESTRICTED
    if not currently_due:
        return AccountStatus.PENDING_VERIFICATION
    return AccountStatus.ONBOARDING
