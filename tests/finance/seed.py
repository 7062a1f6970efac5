"""A small hand-checked data set posted straight into the ledger.

USD, coach 1, fee 20 %:
  A  booking 1  gross 10000  fee 2000  share 8000  processing 320  (2031-03-03)
  B  booking 2  gross  5000  fee 1000  share 4000  processing 175  (2031-03-04)
     refund of B 2000: fee back 400, share back 1600                (2031-03-05)
  C  booking 3  gross  3000  fee  600  share 2400  processing 117  (2031-03-06)
     dispute of C lost: 3000 + 1500 dispute fee withdrawn, the fee
     and the share reversed, the 1500 a dispute loss                 (2031-03-07)
  release of A 8000 (2031-03-10), payout 1 of 8000 started and settled
  by transfer tr_1 (2031-03-11)
JPY, coach 2: D booking 4 gross 5000 fee 1000 share 4000 processing 180 (2031-03-12)

Totals (USD): gross 18000, platform fees 2600, processing 612, dispute losses
1500, net revenue 488, refunds 2000, disputes 4500, payouts made 8000, in
transit 0, coaches owed 2400 (all pending: B's 4000 - 1600), Stripe balance 2888.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, TxType, post


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2031, 3, d, hour, tzinfo=UTC)


async def _acc(db: AsyncSession, kind: Kind, cur: str, coach: int | None = None) -> int:
    ref = AccountRef.coach(coach, kind, cur) if coach else AccountRef.platform(kind, cur)
    return await get_account_id(db, ref)


async def seed(db: AsyncSession) -> dict[str, int]:
    """Post the data set; answer the ledger transaction ids by name."""
    ids: dict[str, int] = {}
    u = "usd"
    cash = await _acc(db, Kind.STRIPE_BALANCE, u)
    fees = await _acc(db, Kind.FEE_REVENUE, u)
    proc = await _acc(db, Kind.PROCESSING_FEES, u)
    losses = await _acc(db, Kind.DISPUTE_LOSSES, u)
    pend = await _acc(db, Kind.PENDING, u, 1)
    avail = await _acc(db, Kind.AVAILABLE, u, 1)
    transit = await _acc(db, Kind.IN_TRANSIT, u, 1)

    async def p(
        name: str,
        type_: TxType,
        at: datetime,
        legs: list[tuple[int, int]],
        currency: str = u,
        **attrs: Any,
    ) -> None:
        legs_ = [Leg(a, amount, currency) for a, amount in legs]
        r = await post(
            db, type=type_, idempotency_key=f"seed:{name}", occurred_at=at, legs=legs_, **attrs
        )
        ids[name] = r.transaction_id

    for name, booking, gross, fee, proc_fee, d in (
        ("A", 1, 10000, 2000, 320, 3),
        ("B", 2, 5000, 1000, 175, 4),
        ("C", 3, 3000, 600, 117, 6),
    ):
        ref = dict(coach_id=1, payer_id=100 + booking, coaching_session_id=10, booking_id=booking)
        await p(
            name,
            TxType.SESSION_PAYMENT,
            day(d),
            [(cash, gross), (fees, -fee), (pend, fee - gross)],
            stripe_object_id=f"pi_{name}",  # as sessions posts it: no charge id
            stripe_payment_intent_id=f"pi_{name}",
            **ref,
        )
        await p(
            f"{name}-fee",
            TxType.PROCESSING_FEE,
            day(d, 13),
            [(proc, proc_fee), (cash, -proc_fee)],
            stripe_object_id=f"txn_{name}",
            stripe_payment_intent_id=f"pi_{name}",
            **ref,
        )
    await p(
        "B-refund",
        TxType.REFUND,
        day(5),
        [(cash, -2000), (fees, 400), (pend, 1600)],
        coach_id=1,
        booking_id=2,
        payer_id=102,
        stripe_object_id="re_B",
        stripe_payment_intent_id="pi_B",
    )
    await p(
        "C-dispute",
        TxType.DISPUTE,
        day(7),
        [(cash, -4500), (losses, 1500), (fees, 600), (pend, 2400)],
        coach_id=1,
        booking_id=3,
        payer_id=103,
        stripe_object_id="du_C",
        stripe_payment_intent_id="pi_C",
        metadata={"event": "lost"},
    )
    await p(
        "A-release",
        TxType.HOLD_RELEASE,
        day(10),
        [(pend, 8000), (avail, -8000)],
        coach_id=1,
        booking_id=1,
    )
    await p(
        "payout", TxType.PAYOUT, day(11), [(avail, 8000), (transit, -8000)], coach_id=1, payout_id=1
    )
    await p(
        "payout-settled",
        TxType.PAYOUT_SETTLED,
        day(11, 14),
        [(transit, 8000), (cash, -8000)],
        coach_id=1,
        payout_id=1,
        stripe_transfer_id="tr_1",
    )

    j = "jpy"
    jcash = await _acc(db, Kind.STRIPE_BALANCE, j)
    jfees = await _acc(db, Kind.FEE_REVENUE, j)
    jproc = await _acc(db, Kind.PROCESSING_FEES, j)
    jpend = await _acc(db, Kind.PENDING, j, 2)
    await p(
        "D",
        TxType.SESSION_PAYMENT,
        day(12),
        [(jcash, 5000), (jfees, -1000), (jpend, -4000)],
        currency=j,
        coach_id=2,
        booking_id=4,
        payer_id=104,
        stripe_object_id="ch_D",
    )
    await p(
        "D-fee",
        TxType.PROCESSING_FEE,
        day(12, 13),
        [(jproc, 180), (jcash, -180)],
        currency=j,
        coach_id=2,
        booking_id=4,
        stripe_object_id="txn_D",
    )
    return ids
