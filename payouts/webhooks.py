"""Connect and transfer webhooks of the payouts package.

Trust Stripe, not the message: each handler takes only the object's id (and
the event's ``account``), re-reads the object from Stripe and books what
Stripe says; an object Stripe does not know books nothing (core/stripe_reread.py).

``transfer.reversed``: a transfer we made was (partly) taken back from the
coach's Connect account. The transfer is retrieved, its reversals listed
from Stripe, and each reversal ``trr_`` posts ``transfer_reversal:<trr>``:
platform ``stripe_balance +R`` (the cash is back with us) and coach
``available -R`` (credit: the coach is owed R again). The usual reason is a
refund after payout: the refund left the coach's available balance negative
(a debt), and the reversal credit cancels that debt, so the coach owes
nothing more. If the reversal had no debt behind it, the credit is money the
coach is owed again and the next payout pays it: no money is lost either way.
Whatever Stripe or a message says, the reversals booked for a payout never
add up to more than Stripe reversed nor more than the payout, and nothing is
booked for a transfer whose amount, currency or destination is not the payout's.

``payout.paid`` / ``payout.failed``: the coach's own payout from their Stripe
balance to their bank (``po_``), retrieved on the event's connected account,
recorded in ``connect_payouts`` and shown to the coach. A failed one also
pauses the coach's payouts (their bank refused the money): an admin resumes
them; a later paid payout does not.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from connect.models import CoachProfile
from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_reread import object_id, reread
from core.stripe_types import StripeEvent, StripePayout, Transfer, TransferReversal
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, TxType, post
from payouts.admin import set_paused
from payouts.models import ConnectPayout, Payout

log = logging.getLogger(__name__)

_STAGES = {"pending": 0, "in_transit": 1, "paid": 2}  # then failed / canceled: 3
_CODE = re.compile(r"[^a-z0-9_]")


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def _stage(status: Any) -> Any:
    return case(_STAGES, value=status, else_=3)


def _transfer_misfit(transfer: Transfer, payout: Payout) -> str | None:
    if transfer.amount != payout.amount:
        return f"amount {transfer.amount}, the payout's {payout.amount}"
    if transfer.currency != payout.currency:
        return f"currency {transfer.currency}, the payout's {payout.currency}"
    if transfer.destination != payout.destination:
        return f"destination {transfer.destination}, the payout's {payout.destination}"
    return None


async def _posted(db: AsyncSession, key: str) -> bool:
    found = await db.execute(
        text("SELECT 1 FROM ledger_transactions WHERE idempotency_key = :k"), {"k": key}
    )
    return found.first() is not None


async def _book_reversals(
    db: AsyncSession,
    payout: Payout,
    transfer: Transfer,
    reversals: tuple[TransferReversal, ...],
    ctx: HandlerContext,
) -> None:
    """Post each of Stripe's reversals once; the caller holds the payout's row lock."""
    mine = [
        r
        for r in reversed(reversals)  # Stripe lists newest first; book oldest first
        if r.transfer_id == transfer.id and r.currency == payout.currency and r.amount > 0
    ]
    # reversed_amount is what has been booked: never beyond what Stripe says
    # it reversed, nor beyond the payout (the table's CHECK says so too).
    ceiling = min(sum(r.amount for r in mine), transfer.amount_reversed, payout.amount)
    cur = payout.currency
    cash = await get_account_id(
        db, AccountRef.platform(Kind.STRIPE_BALANCE, cur), hot_slots=ctx.settings.ledger_hot_slots
    )
    available = await get_account_id(db, AccountRef.coach(payout.coach_id, Kind.AVAILABLE, cur))
    for rev in mine:
        key = f"transfer_reversal:{rev.id}"
        if await _posted(db, key):
            continue
        amount = min(rev.amount, ceiling - payout.reversed_amount)
        if amount <= 0:
            log.warning(
                "reversal %s of %s: payout %s has %s of %s booked as reversed already; not booked",
                rev.id, transfer.id, payout.id, payout.reversed_amount, ceiling,
            )  # fmt: skip
            continue
        await post(
            db,
            type=TxType.PAYOUT_REVERSAL,
            idempotency_key=key,
            occurred_at=_ts(rev.created or None) or ctx.clock.now(),
            legs=[Leg(cash, amount, cur), Leg(available, -amount, cur)],
            coach_id=payout.coach_id,
            payout_id=payout.id,
            stripe_object_id=rev.id,
            stripe_transfer_id=payout.stripe_transfer_id,
        )
        payout.reversed_amount += amount
        payout.updated_at = ctx.clock.now()
    await db.flush()


async def on_transfer_reversed(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    transfer_id = object_id(event, "tr_")
    if transfer_id is None:
        return
    payout_id = (
        await db.execute(select(Payout.id).where(Payout.stripe_transfer_id == transfer_id))
    ).scalar_one_or_none()
    if payout_id is None:
        log.warning("transfer.reversed %s for unknown transfer %s", event.id, transfer_id)
        return
    transfer = await reread(event, "transfer", transfer_id, ctx.gateway.retrieve_transfer)
    if transfer is None:
        return
    reversals = await ctx.gateway.all_transfer_reversals(transfer)
    # Stripe's answer first, the payout's row lock after: the payout job never
    # waits on a slow Stripe for this.
    payout = (
        await db.execute(
            select(Payout)
            .where(Payout.id == payout_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    why = _transfer_misfit(transfer, payout)
    if why is not None:
        log.warning(
            "transfer.reversed %s: transfer %s is not payout %s's (%s); nothing booked",
            event.id, transfer.id, payout.id, why,
        )  # fmt: skip
        return
    await _book_reversals(db, payout, transfer, reversals, ctx)


def _pause_reason(po: StripePayout) -> str:
    code = _CODE.sub("", (po.failure_code or "unknown").lower())[:64] or "unknown"
    return f"the bank refused payout {po.id} ({code}); payouts paused until an admin resumes them"


async def _pause_for(db: AsyncSession, coach_id: int, po: StripePayout, now: datetime) -> None:
    # Locked before it is read, so an admin pausing at the same moment keeps their reason.
    profile = (
        await db.execute(
            select(CoachProfile).where(CoachProfile.user_id == coach_id).with_for_update()
        )
    ).scalar_one_or_none()
    if profile is None:
        return
    if profile.payouts_paused:
        log.info("payout %s failed; coach %s's payouts are paused already", po.id, coach_id)
        return
    await set_paused(db, coach_id=coach_id, paused=True, reason=_pause_reason(po), now=now)


async def on_connect_payout(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    """payout.paid / payout.failed of a coach's connected account."""
    account = event.account
    if not (isinstance(account, str) and account.startswith("acct_")):
        log.warning("%s %s names no connected account; nothing recorded", event.type, event.id)
        return
    coach_id = (
        await db.execute(
            text("SELECT coach_id FROM connect_accounts WHERE stripe_account_id = :a"),
            {"a": account},
        )
    ).scalar_one_or_none()
    if coach_id is None:
        log.warning("%s %s for account %s, no coach's", event.type, event.id, account)
        return
    payout_id = object_id(event, "po_")
    if payout_id is None:
        return

    async def fetch(po_id: str) -> StripePayout:
        # On the event's account: Stripe answers 404 for any other account's payout.
        return await ctx.gateway.retrieve_payout(po_id, account=account)

    po = await reread(event, "payout", payout_id, fetch)
    if po is None:
        return
    held = (
        await db.execute(
            select(ConnectPayout.status, ConnectPayout.stripe_account_id)
            .where(ConnectPayout.stripe_payout_id == po.id)
            .with_for_update()
        )
    ).one_or_none()
    if held is not None and held.stripe_account_id != account:
        log.warning(
            "%s %s: payout %s is recorded for %s, not %s; nothing recorded",
            event.type, event.id, po.id, held.stripe_account_id, account,
        )  # fmt: skip
        return
    now = ctx.clock.now()
    values = {
        "stripe_payout_id": po.id,
        "stripe_account_id": account,
        "coach_id": coach_id,
        "amount": po.amount,
        "currency": po.currency,
        "status": po.status[:16],
        "arrival_date": _ts(po.arrival_date),
        "failure_code": po.failure_code,
        "failure_message": po.failure_message,
        # The message's time, but never later than ours: a forged far-future
        # time must not shut the row to Stripe's later word.
        "event_created": min(_ts(event.created) or now, now),
        "created_at": now,
        "updated_at": now,
    }
    stmt = insert(ConnectPayout).values(**values)
    update = {k: stmt.excluded[k] for k in values if k not in ("stripe_payout_id", "created_at")}
    # A payout only moves forward (pending, in_transit, paid, then failed or
    # canceled): what Stripe says now never moves our row back, whatever the
    # order the events come in; the same stage takes the newer event's fields.
    new, old = _stage(stmt.excluded.status), _stage(ConnectPayout.status)
    forward = (new > old) | (
        (new == old) & (ConnectPayout.event_created <= stmt.excluded.event_created)
    )
    await db.execute(
        stmt.on_conflict_do_update(index_elements=["stripe_payout_id"], set_=update, where=forward)
    )
    if po.status == "failed" and (held is None or held.status != "failed"):
        await _pause_for(db, int(coach_id), po, now)


def register_handlers(registry: HandlerRegistry) -> None:
    registry.register("transfer.reversed", on_transfer_reversed)
    registry.register("payout.paid", on_connect_payout)
    registry.register("payout.failed", on_connect_payout)
