"""Disputes (chargebacks) of a booking's payment.

Postings (debit +, credit -), ``a`` = what Stripe withdrew (the dispute's
amount), ``s`` = the coach share of the part of ``a`` the booking still holds
(``min(a, amount - amount_refunded)``; cumulative split, taken as the last
part of the charge), ``f = a - s`` the platform's part (its fee, and any part
of ``a`` already refunded to the mentee), ``k`` = the coach's pending account
while the earning is unreleased, else available:

opened ``dispute:<du>:opened``  stripe_balance -a, disputes +a - s (= +f), coach k +s
    Stripe took ``a``; the coach's share of it leaves the coach's balance and
    the platform's own part waits in ``disputes`` (an asset: money claimed back).
fee ``dispute_fee:<du>``        processing_fees +fee, stripe_balance -fee
won ``dispute:<du>:won``        the exact negation of ``opened`` (coach share returned
    to pending if the earning is still unreleased, else to available)
won fee ``dispute_fee:<du>:returned``  stripe_balance +fee, processing_fees -fee
lost ``dispute:<du>:lost``      dispute_losses +f, disputes -f (the coach share stays taken)

Every transaction balances on its own, so the trial balance stays zero at
every step, and ``disputes`` is back to zero once the dispute is closed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import refund_split
from core.stripe_types import Dispute
from ledger.accounts import Kind
from ledger.posting import Leg, TxType, post
from sessions.audit import Actor, transition
from sessions.booking import get_booking
from sessions.earnings import take_share
from sessions.models import Booking
from sessions.postings import coach, platform, reversal_legs

log = logging.getLogger(__name__)


async def _posted(db: AsyncSession, key: str) -> int | None:
    row = await db.execute(
        text("SELECT id FROM ledger_transactions WHERE idempotency_key = :k"), {"k": key}
    )
    found = row.scalar_one_or_none()
    return int(found) if found is not None else None


def _attrs(booking: Booking, dispute: Dispute) -> dict[str, Any]:
    return {
        "coach_id": booking.coach_id,
        "payer_id": booking.mentee_id,
        "coaching_session_id": booking.coaching_session_id,
        "booking_id": booking.id,
        "stripe_object_id": dispute.id,
        "stripe_payment_intent_id": dispute.payment_intent_id,
    }


async def find_booking_id(db: AsyncSession, payment_intent_id: str | None) -> int | None:
    if payment_intent_id is None:
        return None
    return (
        await db.execute(select(Booking.id).where(Booking.payment_intent_id == payment_intent_id))
    ).scalar_one_or_none()


async def open_dispute(
    db: AsyncSession, booking_id: int, dispute: Dispute, *, now: datetime
) -> None:
    if dispute.status.startswith("warning_"):
        # An inquiry (retrieval request): Stripe withdraws nothing unless it
        # escalates, which comes as charge.dispute.funds_withdrawn; and
        # warning_closed gives nothing back. So nothing moves now.
        return
    booking = await get_booking(db, booking_id, lock=True)
    key = f"dispute:{dispute.id}:opened"
    if await _posted(db, key) is not None:
        return
    # Stripe withdraws the dispute's amount, and a cardholder may dispute the
    # whole charge after a partial refund (the refund is then our evidence):
    # ``amount`` is what left our Stripe balance (dispute_misfit caps it at the
    # charge). The coach gives back only the share of what the booking still
    # holds (``covered``, the last part of the charge): the refunded part's
    # share went back with its refund. The rest waits in ``disputes`` as the
    # platform's claim, and becomes a loss if the dispute is lost.
    amount = min(dispute.amount, booking.amount)
    covered = min(amount, booking.amount - booking.amount_refunded)
    share = 0
    if covered > 0:
        share = refund_split(
            original_gross=booking.amount,
            bps=booking.fee_bps,
            refunded_before=booking.amount - covered,
            refund=covered,
        ).coach_share
    kind = await take_share(db, booking.id, share)
    cur = booking.currency
    legs = [
        Leg(await platform(db, Kind.STRIPE_BALANCE, cur), -amount, cur),
        Leg(await platform(db, Kind.DISPUTES, cur), amount - share, cur),
        Leg(await coach(db, booking.coach_id, kind, cur), share, cur),
    ]
    await post(
        db,
        type=TxType.DISPUTE,
        idempotency_key=key,
        legs=[lg for lg in legs if lg.amount],
        occurred_at=now,
        metadata={"event": "opened", "coach_kind": kind.value},
        **_attrs(booking, dispute),
    )
    if dispute.fee > 0:
        await post(
            db,
            type=TxType.PROCESSING_FEE,
            idempotency_key=f"dispute_fee:{dispute.id}",
            legs=[
                Leg(await platform(db, Kind.PROCESSING_FEES, cur), dispute.fee, cur),
                Leg(await platform(db, Kind.STRIPE_BALANCE, cur), -dispute.fee, cur),
            ],
            occurred_at=now,
            **_attrs(booking, dispute),
        )
    await transition(
        db,
        booking,
        booking.status,
        actor=Actor.stripe(),
        cause="dispute_opened",
        at=now,
        detail={"dispute": dispute.id, "amount": amount, "coach_part": share},
    )


async def _opened_legs(db: AsyncSession, dispute_id: str) -> list[tuple[int, int, str, str, str]]:
    rows = await db.execute(
        text(
            "SELECT e.account_id, e.amount, e.currency, a.owner_type, a.kind "
            "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
            "JOIN ledger_accounts a ON a.id = e.account_id WHERE t.idempotency_key = :k"
        ),
        {"k": f"dispute:{dispute_id}:opened"},
    )
    return [(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]


async def close_dispute(
    db: AsyncSession, booking_id: int, dispute: Dispute, *, now: datetime
) -> None:
    if dispute.status not in ("won", "lost"):
        return
    await open_dispute(db, booking_id, dispute, now=now)  # closed may arrive before created
    booking = await get_booking(db, booking_id, lock=True)
    key = f"dispute:{dispute.id}:{dispute.status}"
    if await _posted(db, key) is not None:
        return
    cur = booking.currency
    if dispute.status == "won":
        legs = await reversal_legs(db, booking, now=now, key=f"dispute:{dispute.id}:opened")
        await post(
            db,
            type=TxType.DISPUTE,
            idempotency_key=key,
            legs=legs,
            occurred_at=now,
            metadata={"event": "won"},
            **_attrs(booking, dispute),
        )
        if dispute.fee_returned > 0:
            await post(
                db,
                type=TxType.PROCESSING_FEE,
                idempotency_key=f"dispute_fee:{dispute.id}:returned",
                legs=[
                    Leg(await platform(db, Kind.STRIPE_BALANCE, cur), dispute.fee_returned, cur),
                    Leg(await platform(db, Kind.PROCESSING_FEES, cur), -dispute.fee_returned, cur),
                ],
                occurred_at=now,
                **_attrs(booking, dispute),
            )
    else:
        opened = await _opened_legs(db, dispute.id)
        held = sum(a for _, a, _, owner, kind in opened if kind == Kind.DISPUTES.value)
        if held:
            await post(
                db,
                type=TxType.DISPUTE,
                idempotency_key=key,
                legs=[
                    Leg(await platform(db, Kind.DISPUTE_LOSSES, cur), held, cur),
                    Leg(await platform(db, Kind.DISPUTES, cur), -held, cur),
                ],
                occurred_at=now,
                metadata={"event": "lost"},
                **_attrs(booking, dispute),
            )
    await transition(
        db,
        booking,
        booking.status,
        actor=Actor.stripe(),
        cause=f"dispute_{dispute.status}",
        at=now,
        detail={"dispute": dispute.id},
    )


def dispute_misfit(dispute: Dispute, booking: Booking) -> str | None:
    """Why Stripe's dispute cannot be booked against ``booking`` (None: it can).

    The dispute must be of the booking's own payment and charge, in its
    currency, and never claim more than the charge Stripe holds.
    """
    charge = dispute.charge
    if booking.payment_intent_id is None or dispute.payment_intent_id != booking.payment_intent_id:
        return "not the booking's payment"
    if booking.charge_id is not None and dispute.charge_id != booking.charge_id:
        return "not the booking's charge"
    if charge is None or charge.id != dispute.charge_id:
        return "its charge was not read from Stripe"
    if charge.payment_intent_id != dispute.payment_intent_id:
        return "its charge is of another payment"
    if not dispute.currency == charge.currency == booking.currency:
        return "another currency"
    if not 0 < dispute.amount <= charge.amount:
        return f"amount {dispute.amount} outside 1..{charge.amount} (the charge)"
    return None
