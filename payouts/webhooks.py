"""Connect and transfer webhooks of the payouts package.

``transfer.reversed``: a transfer we made was (partly) taken back from the
coach's Connect account. Each reversal ``trr_`` posts ``transfer_reversal:<trr>``:
platform ``stripe_balance +R`` (the cash is back with us) and coach
``available -R`` (credit: the coach is owed R again). The usual reason is a
refund after payout: the refund left the coach's available balance negative
(a debt), and the reversal credit cancels that debt, so the coach owes
nothing more. If the reversal had no debt behind it, the credit is money the
coach is owed again and the next payout pays it: no money is lost either way.

``payout.paid`` / ``payout.failed``: the coach's own payout from their Stripe
balance to their bank (``po_``), recorded in ``connect_payouts`` (newest event
wins; events arrive out of order) and shown to the coach.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext, HandlerRegistry
from core.stripe_types import StripeEvent
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, TxType, post
from payouts.models import ConnectPayout, Payout

log = logging.getLogger(__name__)


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def _reversals(obj: dict[str, Any]) -> list[dict[str, Any]]:
    rev = obj.get("reversals")
    data = rev.get("data") if isinstance(rev, dict) else None
    return [r for r in data or [] if isinstance(r, dict) and r.get("id")]


async def on_transfer_reversed(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    obj = event.data_object
    payout = (
        await db.execute(
            select(Payout).where(Payout.stripe_transfer_id == obj.get("id")).with_for_update()
        )
    ).scalar_one_or_none()
    if payout is None:
        log.warning("transfer.reversed for unknown transfer %s", obj.get("id"))
        return
    reversals = _reversals(obj)
    cumulative = int(obj.get("amount_reversed") or 0)
    if not reversals and cumulative > payout.reversed_amount:
        # A snapshot without the list: book the growth of the cumulative total,
        # keyed by that total so a replay of the same event posts nothing new.
        delta = cumulative - payout.reversed_amount
        reversals = [{"id": f"{obj['id']}:{cumulative}", "amount": delta}]
    cur = payout.currency
    cash = await get_account_id(
        db, AccountRef.platform(Kind.STRIPE_BALANCE, cur), hot_slots=ctx.settings.ledger_hot_slots
    )
    available = await get_account_id(db, AccountRef.coach(payout.coach_id, Kind.AVAILABLE, cur))
    for rev in reversals:
        amount = int(rev["amount"])
        if amount <= 0:
            continue
        await post(
            db,
            type=TxType.PAYOUT_REVERSAL,
            idempotency_key=f"transfer_reversal:{rev['id']}",
            occurred_at=_ts(rev.get("created")) or ctx.clock.now(),
            legs=[Leg(cash, amount, cur), Leg(available, -amount, cur)],
            coach_id=payout.coach_id,
            payout_id=payout.id,
            stripe_object_id=str(rev["id"]),
            stripe_transfer_id=payout.stripe_transfer_id,
        )
    total = cumulative or sum(int(r["amount"]) for r in reversals)
    payout.reversed_amount = min(max(payout.reversed_amount, total), payout.amount)
    payout.updated_at = ctx.clock.now()
    await db.flush()


async def on_connect_payout(db: AsyncSession, event: StripeEvent, ctx: HandlerContext) -> None:
    obj = event.data_object
    account = event.account or obj.get("destination_account") or ""
    coach_id = (
        await db.execute(
            text("SELECT coach_id FROM connect_accounts WHERE stripe_account_id = :a"),
            {"a": account},
        )
    ).scalar_one_or_none()
    now = ctx.clock.now()
    created = _ts(event.created) or now
    values = {
        "stripe_payout_id": str(obj["id"]),
        "stripe_account_id": str(account),
        "coach_id": coach_id,
        "amount": int(obj["amount"]),
        "currency": str(obj["currency"]).lower(),
        "status": str(obj.get("status") or event.type.split(".")[-1])[:16],
        "arrival_date": _ts(obj.get("arrival_date")),
        "failure_code": obj.get("failure_code"),
        "failure_message": obj.get("failure_message"),
        "event_created": created,
        "created_at": now,
        "updated_at": now,
    }
    stmt = insert(ConnectPayout).values(**values)
    update = {k: stmt.excluded[k] for k in values if k not in ("stripe_payout_id", "created_at")}
    await db.execute(
        stmt.on_conflict_do_update(
            index_elements=["stripe_payout_id"],
            set_=update,
            where=ConnectPayout.event_created <= stmt.excluded.event_created,
        )
    )


def register_handlers(registry: HandlerRegistry) -> None:
    registry.register("transfer.reversed", on_transfer_reversed)
    registry.register("payout.paid", on_connect_payout)
    registry.register("payout.failed", on_connect_payout)
