"""The payout job's per-coach statements, few round trips each.

The job pays thousands of coaches per run and each round trip to PostgreSQL
costs this process ~0.15-0.25 ms of CPU (psycopg, the socket, the event
loop), more than the statement itself costs the server. So the usual path of
a payout is seven round trips: reserve is BEGIN, one statement, COMMIT; the
send is BEGIN, the claim, (Stripe), one statement, COMMIT. The statements
(payouts/sql.py) do the same writes, under the same locks and in the same
transactions, as reserve() and settle() in payouts/service.py, which stay the
exact path: whenever the one-statement form declines (a condition is off, an
account is missing) the caller falls back to them, so every refusal keeps its
precise reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.stripe_types import Transfer
from ledger.posting import TxType
from payouts import sql
from payouts.models import PAID, Payout, attach, check_payout_transition, reserved_payout
from payouts.schedule import period_start

_COLUMNS = tuple(c.key for c in Payout.__table__.columns)


async def reserve_due(
    db: AsyncSession, *, coach_id: int, currency: str, schedule: str, now: datetime
) -> Payout | None:
    """reserve() for the job in one statement; ``None``: declined, ask reserve() why.

    ``schedule`` is the one the candidate query read; the statement checks it
    is still the coach's and computes nothing of its own about periods: the
    period start comes from payouts/schedule.py, as for reserve()."""
    params = {
        "c": coach_id,
        "cur": currency,
        "schedule": schedule,
        "period_start": period_start(schedule, now),
        "type": str(TxType.PAYOUT),
        "now": now,
    }
    row = (await db.execute(sql.RESERVE_DUE, params)).one_or_none()
    if row is None:
        return None
    payout = reserved_payout(
        payout_id=int(row.id),
        coach_id=coach_id,
        currency=currency,
        amount=int(row.amount),
        destination=row.destination,
        reserve_transaction_id=int(row.reserve_transaction_id),
        now=now,
    )
    return attach(db, payout)


async def claim(
    db: AsyncSession, payout_id: int, *, now: datetime | None
) -> tuple[Payout, int | None, int | None] | None:
    """Lock an open payout for its Stripe call (``None`` if another worker holds it,
    or it is settled, or with ``now`` not due yet), with the in-transit and
    platform cash account ids settling it posts to (``None`` if missing)."""
    row = (await db.execute(sql.LOCK_FOR_SEND, {"id": payout_id, "now": now})).one_or_none()
    if row is None:
        return None
    values: dict[str, Any] = row._asdict()
    payout = attach(db, Payout(**{k: values[k] for k in _COLUMNS}))
    return payout, values["in_transit_account"], values["cash_account"]


async def settle_one(
    db: AsyncSession,
    payout: Payout,
    transfer: Transfer,
    *,
    in_transit: int,
    cash: int,
    now: datetime,
    outcome: str = "paid",
) -> None:
    """settle() in one statement, the accounts known. Flushes nothing; the caller commits."""
    check_payout_transition(payout.status, PAID)
    written = (
        await db.execute(
            sql.SETTLE_ONE,
            {
                "type": str(TxType.PAYOUT_SETTLED),
                "id": payout.id,
                "c": payout.coach_id,
                "cur": payout.currency,
                "amount": payout.amount,
                "in_transit": in_transit,
                "cash": cash,
                "key": payout.idempotency_key(),
                "outcome": outcome,
                "tr": transfer.id,
                "now": now,
            },
        )
    ).one()
    # What the statement wrote, set on the object as already saved (no second UPDATE).
    for key, value in {
        "status": PAID,
        "stripe_transfer_id": transfer.id,
        "settle_transaction_id": int(written.settle_transaction_id),
        "settled_at": now,
        "next_attempt_at": None,
        "last_error": None,
        "updated_at": now,
        "attempts": int(written.attempts),
        "last_attempt_at": now,
    }.items():
        set_committed_value(payout, key, value)
