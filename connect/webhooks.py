"""Stripe webhook handlers of the `connect` package."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from connect.sync import refresh_account
from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_types import StripeEvent

log = logging.getLogger(__name__)


async def on_account_updated(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """Keep our copy of a Connect account in sync.

    The event's snapshot is ignored on purpose: events arrive late, twice and
    out of order, so the account is re-read from Stripe (under our row lock)
    and whatever Stripe says *now* is stored. A replayed old event therefore
    re-stores the current state and can never move the record backwards.
    """
    account_id = event.account or str(event.data_object.get("id") or "")
    if not account_id.startswith("acct_"):
        log.warning("account.updated %s without an account id", event.id)
        return
    result = await refresh_account(
        db,
        stripe_account_id=account_id,
        gateway=ctx.gateway,
        now=ctx.clock.now(),
        cause=event.id,
    )
    if result is None:
        # Not one of ours (another platform integration on the same Stripe
        # account, or a test account): nothing to keep in sync.
        log.info("account.updated %s for unknown account %s", event.id, account_id)


def register_handlers(registry: HandlerRegistry) -> None:
    registry.register("account.updated", on_account_updated)
