"""Keeping our copy of a Connect account in step with Stripe.

A refresh reads Stripe first and then locks our row to store what it read,
stamped with the time the read started: a state observed before the one
stored is ignored, so the record never moves backwards, and no one waits on
our row while Stripe answers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import ConnectAccount
from connect.status import derive_status
from core import audit
from core.stripe_types import StripeAccount

if TYPE_CHECKING:
    from core.stripe_gateway import StripeGateway


@dataclass(frozen=True, slots=True)
class SyncResult:
    account: ConnectAccount
    previous_status: str
    changed: bool
    stale: bool = False


def apply_stripe_state(row: ConnectAccount, acct: StripeAccount) -> None:
    row.country = acct.country
    row.default_currency = acct.default_currency.lower() if acct.default_currency else None
    row.charges_enabled = acct.charges_enabled
    row.payouts_enabled = acct.payouts_enabled
    row.details_submitted = acct.details_submitted
    row.transfers_capability = acct.transfers_capability
    row.requirements_currently_due = list(acct.requirements_currently_due)
    row.requirements_past_due = list(acct.requirements_past_due)
    row.requirements_eventually_due = list(acct.requirements_eventually_due)
    row.disabled_reason = acct.disabled_reason
    row.status = derive_status(
        charges_enabled=acct.charges_enabled,
        payouts_enabled=acct.payouts_enabled,
        details_submitted=acct.details_submitted,
        transfers_capability=acct.transfers_capability,
        currently_due=acct.requirements_currently_due,
        past_due=acct.requirements_past_due,
        disabled_reason=acct.disabled_reason,
    )
    row.raw = dataclasses.asdict(acct)


async def sync_account(
    db: AsyncSession,
    *,
    stripe_account: StripeAccount,
    now: datetime,
    observed_at: datetime | None = None,
    cause: str | None = None,
) -> SyncResult | None:
    """Store the state Stripe reported; None for an account we do not know.

    ``observed_at`` is when that state was read from Stripe (default ``now``).
    A state observed before the one we hold is ignored (``stale``), so a slow
    reader can never write an older state over a newer one.
    """
    observed = observed_at or now
    row = (
        await db.execute(
            select(ConnectAccount)
            .where(ConnectAccount.stripe_account_id == stripe_account.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    previous = row.status
    if row.synced_at is not None and observed < row.synced_at:
        return SyncResult(account=row, previous_status=previous, changed=False, stale=True)
    apply_stripe_state(row, stripe_account)
    row.synced_at = observed
    row.updated_at = now
    if row.status != previous:
        await audit.record(
            db,
            actor_kind="stripe",
            action="connect_account.status_changed",
            entity_type="connect_account",
            entity_id=row.id,
            at=now,
            before={"status": previous},
            after={"status": row.status, "disabled_reason": row.disabled_reason},
            cause=cause,
        )
    await db.flush()
    return SyncResult(account=row, previous_status=previous, changed=row.status != previous)


async def refresh_account(
    db: AsyncSession,
    *,
    stripe_account_id: str,
    gateway: StripeGateway,
    now: datetime,
    cause: str | None = None,
) -> SyncResult | None:
    """Re-read the account from Stripe and store it; None for an account we do not know.

    Stripe is asked before our row is locked (a slow Stripe must not hold up
    everyone else who needs the row); ``now`` is taken before the call and
    passed as ``observed_at``, so a refresh that started earlier than the one
    stored never writes its (possibly older) state over it. Events carry a
    snapshot that may be old by the time it arrives; this never uses it.
    Raises ``StripeNotFound`` when Stripe has no such account.
    """
    known = (
        await db.execute(
            select(ConnectAccount.id).where(ConnectAccount.stripe_account_id == stripe_account_id)
        )
    ).scalar_one_or_none()
    if known is None:
        return None
    acct = await gateway.retrieve_account(stripe_account_id)
    return await sync_account(db, stripe_account=acct, now=now, observed_at=now, cause=cause)
