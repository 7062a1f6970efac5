"""Connect test helpers: users, settings, and Stripe account bodies in each state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from core.users import provision_user
from tests.core.stripe_fixtures import account

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = Settings(
    database_url="postgresql://unused",
    stripe_secret_key="sk_test_gateway",
    public_url="https://coachpay.test",
)
_seq = itertools.count(1)


async def make_user(db: AsyncSession, role: str = "coach", email: str | None = None) -> int:
    user = await provision_user(
        db, sub=f"connect-test-{role}-{next(_seq)}-{id(db)}", role=role, email=email, now=T0
    )
    return user.id


def fresh_account(account_id: str = "acct_1Coach", **over: Any) -> dict[str, Any]:
    """As Stripe answers right after creation: initial requirements already past due."""
    return account(account_id, **over)


def active_account(account_id: str = "acct_1Coach", **over: Any) -> dict[str, Any]:
    body = account(
        account_id,
        charges_enabled=True,
        payouts_enabled=True,
        details_submitted=True,
        capabilities={"transfers": "active"},
        requirements={
            "currently_due": [],
            "past_due": [],
            "eventually_due": [],
            "disabled_reason": None,
            "pending_verification": [],
            "errors": [],
            "alternatives": [],
            "current_deadline": None,
        },
    )
    return {**body, **over}


def restricted_account(account_id: str = "acct_1Coach") -> dict[str, Any]:
    return account(
        account_id,
        charges_enabled=False,
        payouts_enabled=False,
        details_submitted=True,
        capabilities={"transfers": "inactive"},
        requirements={
            "currently_due": ["individual.verification.document"],
            "past_due": ["individual.verification.document"],
            "eventually_due": ["individual.verification.document"],
            "disabled_reason": "requirements.past_due",
        },
    )


def rejected_account(account_id: str = "acct_1Coach") -> dict[str, Any]:
    return account(
        account_id,
        charges_enabled=False,
        payouts_enabled=False,
        details_submitted=True,
        capabilities={"transfers": "inactive"},
        requirements={
            "currently_due": [],
            "past_due": [],
            "eventually_due": [],
            "disabled_reason": "rejected.fraud",
        },
    )
