"""Step 2 of a payout: the Stripe transfer, and what its answer means for us.

The open payout row is locked (``FOR UPDATE SKIP LOCKED``) for the length of
the call, so two workers never send the same payout at once, and the outcome
is recorded in that same transaction. A crash anywhere rolls back to "pending"
and the next run sends the same idempotency key again: Stripe (and the
emulator) answer with the transfer made the first time, never a second one.
Past Stripe's idempotency window the key is forgotten, so an unsettled payout
is first looked up by the metadata we stamp on every transfer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.log_context import bind_ids
from core.settings import Settings
from core.stripe_errors import (
    StripeAuthenticationError,
    StripeBalanceInsufficient,
    StripeIdempotencyError,
    StripeOutcomeUnknown,
    StripeRefused,
)
from core.stripe_gateway import StripeGateway
from core.stripe_types import Transfer
from payouts.errors import SimulatedCrash
from payouts.hotpath import claim, settle_one
from payouts.models import Payout
from payouts.refusals import record_refusal
from payouts.service import fail, leave_pending, log_attempt, settle, wait_for_funds

log = logging.getLogger(__name__)

Outcome = Literal["paid", "failed", "waiting_funds", "unknown", "skipped"]
# Test seam: called with a step name; raise SimulatedCrash to "kill" the process there.
CrashHook = Callable[[str], None]


def crash_at(step: str | None) -> CrashHook:
    def hook(here: str) -> None:
        if here == step:
            raise SimulatedCrash(here)

    return hook


def _no_crash(_: str) -> None:
    return None


def transfer_metadata(payout: Payout) -> dict[str, str]:
    return {"payout_id": str(payout.id), "coach_id": str(payout.coach_id)}


def transfer_group(payout: Payout) -> str:
    return f"payout:{payout.id}"


async def _find_or_create(
    payout: Payout, gateway: StripeGateway, *, now: datetime, window: timedelta
) -> tuple[Transfer, bool]:
    """The transfer for this payout: looked up first once the key may be forgotten.

    The window is counted from the payout's creation, which is no later than
    the first send, so the lookup starts early rather than late (safe)."""
    if now - payout.created_at >= window:
        found = await gateway.find_transfer_by_metadata(
            destination=payout.destination,
            transfer_group=transfer_group(payout),
            key="payout_id",
            value=str(payout.id),
        )
        if found is not None:
            return found, True
    created = await gateway.create_transfer(
        amount=payout.amount,
        currency=payout.currency,
        destination=payout.destination,
        transfer_group=transfer_group(payout),
        metadata=transfer_metadata(payout),
        description=f"coachpay payout {payout.id}",
        idempotency_key=payout.idempotency_key(),
    )
    return created, False


async def process_payout(
    factory: async_sessionmaker[AsyncSession],
    payout_id: int,
    *,
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    hook: CrashHook = _no_crash,
    only_due: bool = True,
) -> Outcome:
    async with factory() as db, db.begin():
        now = clock.now()
        claimed = await claim(db, payout_id, now=now if only_due else None)
        if claimed is None:
            return "skipped"
        payout, in_transit, cash = claimed
        bind_ids(payout_id=payout.id, coach_id=payout.coach_id)
        hook("before_transfer")
        window = timedelta(hours=settings.stripe_idempotency_window_hours)
        try:
            transfer, found = await _find_or_create(payout, gateway, now=now, window=window)
        except StripeBalanceInsufficient as exc:
            log_attempt(db, payout, "waiting_funds", now, error_code=exc.code, message=exc.message)
            wait_for_funds(payout, message=exc.message, now=now)
            return "waiting_funds"
        except (StripeIdempotencyError, StripeAuthenticationError) as exc:
            # Our bug or our configuration, not the coach's: keep the money
            # in transit and the payout visible as stuck until a person acts.
            log_attempt(db, payout, "error", now, error_code=exc.code, message=exc.message)
            leave_pending(payout, message=f"{type(exc).__name__}: {exc.message}", now=now)
            log.error("payout %s: %s", payout.id, exc.message)
            return "unknown"
        except StripeRefused as exc:
            reason = f"Stripe refused the transfer: {exc.message}"
            log_attempt(db, payout, "refused", now, error_code=exc.code, message=exc.message)
            await fail(db, payout, code=exc.code, reason=reason, now=now)
            # After the ledger, as settle() does: payout row, ledger, coach profile.
            state = await record_refusal(
                db, coach_id=payout.coach_id, payout_id=payout.id, message=exc.message, now=now,
                settings=settings,
            )  # fmt: skip
            if state is not None:  # what the coach reads on the failed payout
                payout.failure_reason = f"{reason} ({state.note()})"[:2000]
            return "failed"
        except StripeOutcomeUnknown as exc:
            log_attempt(db, payout, "unknown", now, message=exc.message)
            leave_pending(payout, message=exc.message, now=now)
            return "unknown"
        hook("after_transfer")
        outcome = "found" if found else "paid"
        if in_transit is not None and cash is not None:
            # One statement: the posting and the row move together, so the
            # "during settle" crash lands after both, before the commit.
            await settle_one(
                db, payout, transfer, in_transit=in_transit, cash=cash, now=now, outcome=outcome
            )
            hook("during_settle")
        else:  # an account to create first: the long way (records the attempt too)
            await settle(
                db,
                payout,
                transfer,
                now=now,
                outcome=outcome,
                hot_slots=settings.ledger_hot_slots,
                after_post=lambda: hook("during_settle"),
            )
        hook("before_commit")
        return "paid"
