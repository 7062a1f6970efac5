"""Stripe webhook handlers of the `connect` package."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from connect.sync import refresh_account
from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_errors import StripeNotFound
from core.stripe_reread import object_id
from core.stripe_types import StripeEvent

log = logging.getLogger(__name__)


async def on_account_updated(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """Keep our copy of a Connect account in sync.

    The event's snapshot is ignored on purpose: events arrive late, twice and
    out of order, and a signed body proves nothing about the account, so the
    account is re-read from Stripe and whatever Stripe says *now* is stored.
    A replayed old event therefore re-stores the current state and can never
    move the record backwards; an account Stripe does not know changes nothing.
    """
    account_id = event.account or object_id(event, "acct_")
    if account_id is None or not account_id.startswith("acct_"):
        log.warning("account.updated %s without an account id", event.id)
        return
    try:
        result = await refresh_account(
            db,
            stripe_account_id=account_id,
            gateway=ctx.gateway,
            now=ctx.clock.now(),
            cause=event.id,
        )
    except StripeNotFound:
        log.warning(
            "account.updated %s names account %s, which Stripe does not know; nothing stored",
            event.id,
            account_id,
        )
        return
    if result is None:
        # Not one of ours (another platform integration on the same Stripe
        # account, or a test account): nothing to keep in sync.
        log.info("account.updated %s for unknown account %s", event.id, account_id)


def register_handlers(registry: HandlerRegistry) -> None:
    registry.register("account.updated", on_account_updated)
