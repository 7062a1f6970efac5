"""Payout bookkeeping: reserve, settle, fail, wait for platform funds.

The three steps of a payout (DESIGN.md, "Hold and payouts"):

1. ``reserve``, one database transaction: a ``payouts`` row (pending) and
   ``payout:<id>``: coach ``available +A`` / ``in_transit -A``. Committed
   BEFORE Stripe is called, so a transfer never exists without its row.
2. the transfer (payouts/transfer.py), ``idempotency_key = payout:<id>``.
3. ``settle`` (``payout_settled:<id>``: ``in_transit +A`` / platform
   ``stripe_balance -A``) or ``fail`` (``payout_failed:<id>``: ``in_transit +A``
   / ``available -A``: the money is the coach's to be paid again) or, on an
   unknown outcome, nothing: the next run retries with the same key.

Why settle credits ``stripe_balance`` and there is no coach ``paid_out``
account: a transfer moves cash out of the platform's Stripe balance into the
coach's Connect account. After it we owe the coach nothing for that money, so
the liability simply closes against the cash that left; a ``paid_out``
account would be a second copy of what the ``payouts`` rows already say.
Lifetime paid out is the sum of paid payouts (payouts/views.py).

The amount is the coach's whole available balance, which already nets any
negative balance left by a refund after payout: 80.00 of new earnings and a
-30.00 debt pay 50.00. The earnings a payout pays for get ``payout_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from connect.profile import backoff_reason
from core.stripe_types import Transfer
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.models import Earning
from ledger.posting import Leg, TxType, post
from payouts import sql
from payouts.models import (
    FAILED,
    PAID,
    PENDING,
    WAITING_FUNDS,
    Payout,
    attach,
    check_payout_transition,
    reserved_payout,
)
from payouts.models import PayoutAttempt as Attempt
from payouts.schedule import is_due

_MAX_TEXT = 2000
WAIT_BACKOFF_BASE = timedelta(minutes=5)
WAIT_BACKOFF_CAP = timedelta(hours=6)


async def coach_accounts(db: AsyncSession, coach_id: int, currency: str) -> dict[str, int]:
    """The coach's account ids by kind, in one query (available and in_transit created
    if missing; pending is there only once the coach was paid)."""
    found = {
        str(k): int(i)
        for k, i in await db.execute(sql.COACH_ACCOUNTS, {"c": coach_id, "cur": currency})
    }
    for kind in (Kind.AVAILABLE, Kind.IN_TRANSIT):
        if kind.value not in found:
            ref = AccountRef.coach(coach_id, kind, currency)
            found[kind.value] = await get_account_id(db, ref)
    return found


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a payout cannot be made now (``reserve`` returns it instead of a payout)."""

    reason: str


async def _lock_by_owner(
    db: AsyncSession, coach_id: int, currency: str, *, wait: bool
) -> tuple[int, int] | Literal["missing", "busy"]:
    """Lock the coach's available balance and return (its account id, what is owed:
    ``-balance``), in one query. While held, no release, refund or other payout
    can move this balance, so the amount read here is the amount reserved.
    "busy": another worker holds a slot (with ``wait``, never); "missing": no
    such account yet."""
    lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
    rows = (
        await db.execute(text(sql.LOCK_BY_OWNER + lock), {"c": coach_id, "cur": currency})
    ).all()
    if not rows:
        return "missing"
    if len(rows) < int(rows[0][2]):  # a slot skipped: the sum would not be the balance
        return "busy"
    return int(rows[0][0]), -sum(int(r[1]) for r in rows)


async def reserve(
    db: AsyncSession,
    *,
    coach_id: int,
    currency: str,
    now: datetime,
    force: bool = False,
    retry_of: int | None = None,
) -> Payout | Refusal:
    """Step 1. ``force`` (an admin's retry) skips the schedule, the minimum and the
    refusal backoff, not the pause or the Connect account's state. Flushes; the
    caller commits.

    Five statements on the usual path (lock, coach, insert, posting, earnings),
    raw SQL rather than ORM flushes: the payout job runs this once per coach."""
    locked = await _lock_by_owner(db, coach_id, currency, wait=force)
    if locked == "missing":  # a coach never paid in this currency: create, then lock
        await coach_accounts(db, coach_id, currency)
        locked = await _lock_by_owner(db, coach_id, currency, wait=force)
    if not isinstance(locked, tuple):
        return Refusal("balance busy (another worker holds it)")
    available, owed = locked
    params = {"coach": coach_id, "cur": currency, "now": now}
    coach = (await db.execute(sql.COACH, params)).one_or_none()
    if coach is None:
        return Refusal("no coach profile")
    if coach.payouts_paused:
        return Refusal("payouts are paused")
    if not coach.payouts_enabled or not coach.stripe_account_id:
        return Refusal("the Connect account cannot receive payouts")
    if coach.has_open:
        return Refusal("a payout is already open")
    if not force and not coach.backoff_over:
        return Refusal(backoff_reason(coach.payout_refusals, coach.payout_retry_at))
    if not force:
        last = coach.last_payout_at
        if not is_due(coach.payout_schedule, last_payout_at=last, now=now):
            return Refusal("the schedule is not due")
        if owed < coach.minimum:
            return Refusal(f"available {owed} is below the minimum {coach.minimum}")
    if owed <= 0:
        return Refusal("nothing available")
    in_transit = coach.in_transit
    if in_transit is None:
        ref = AccountRef.coach(coach_id, Kind.IN_TRANSIT, currency)
        in_transit = await get_account_id(db, ref)
    payout_id = (
        await db.execute(
            sql.INSERT,
            {
                "c": coach_id,
                "cur": currency,
                "amount": owed,
                "dest": coach.stripe_account_id,
                "retry_of": retry_of,
                "now": now,
            },
        )
    ).scalar_one()
    result = await post(
        db,
        type=TxType.PAYOUT,
        idempotency_key=f"payout:{payout_id}",
        occurred_at=now,
        legs=[Leg(available, owed, currency), Leg(int(in_transit), -owed, currency)],
        coach_id=coach_id,
        payout_id=payout_id,
    )
    params = {"tx": result.transaction_id, "id": payout_id, "c": coach_id, "cur": currency}
    await db.execute(sql.RESERVED, params)
    # The row as written, made a persistent (clean) object of this session
    # without the ORM reading it back or writing it again.
    payout = reserved_payout(
        payout_id=payout_id,
        coach_id=coach_id,
        currency=currency,
        amount=owed,
        destination=coach.stripe_account_id,
        reserve_transaction_id=result.transaction_id,
        now=now,
        retry_of=retry_of,
    )
    return attach(db, payout)


def log_attempt(
    db: AsyncSession, payout: Payout, outcome: str, now: datetime, **fields: Any
) -> None:
    message = fields.pop("message", None)
    db.add(
        Attempt(
            payout_id=payout.id,
            idempotency_key=payout.idempotency_key(),
            outcome=outcome,
            message=message[:_MAX_TEXT] if message else None,
            at=now,
            **fields,
        )
    )
    payout.attempts += 1
    payout.last_attempt_at = now
    payout.updated_at = now


async def settle(
    db: AsyncSession,
    payout: Payout,
    transfer: Transfer,
    *,
    now: datetime,
    outcome: str = "paid",
    hot_slots: int = 16,
    after_post: Callable[[], None] | None = None,
) -> None:
    """Step 3, success: the transfer exists at Stripe. Records the attempt
    (``outcome``: paid, or found by metadata) too. Flushes; the caller commits.

    ``after_post`` is a test seam between the ledger posting and the row update."""
    check_payout_transition(payout.status, PAID)
    cur = payout.currency
    ids = (await db.execute(sql.SETTLE_ACCOUNTS, {"c": payout.coach_id, "cur": cur})).one()
    in_transit, cash = ids.in_transit, ids.cash
    if in_transit is None:
        ref = AccountRef.coach(payout.coach_id, Kind.IN_TRANSIT, cur)
        in_transit = await get_account_id(db, ref)
    if cash is None:
        ref = AccountRef.platform(Kind.STRIPE_BALANCE, cur)
        cash = await get_account_id(db, ref, hot_slots=hot_slots)
    result = await post(
        db,
        type=TxType.PAYOUT_SETTLED,
        idempotency_key=f"payout_settled:{payout.id}",
        occurred_at=now,
        legs=[Leg(int(in_transit), payout.amount, cur), Leg(int(cash), -payout.amount, cur)],
        coach_id=payout.coach_id,
        payout_id=payout.id,
        stripe_transfer_id=transfer.id,
    )
    if after_post is not None:
        after_post()
    await db.flush()  # anything pending on the object first: the statement below is the truth
    attempts = (
        await db.execute(
            sql.SETTLED,
            {
                "id": payout.id,
                "c": payout.coach_id,
                "key": payout.idempotency_key(),
                "outcome": outcome,
                "tr": transfer.id,
                "tx": result.transaction_id,
                "now": now,
            },
        )
    ).scalar_one()
    # What the statement wrote, set on the object as already saved (no second UPDATE).
    written = {
        "status": PAID,
        "stripe_transfer_id": transfer.id,
        "settle_transaction_id": result.transaction_id,
        "settled_at": now,
        "next_attempt_at": None,
        "last_error": None,
        "updated_at": now,
        "attempts": int(attempts),
        "last_attempt_at": now,
    }
    for key, value in written.items():
        set_committed_value(payout, key, value)


async def fail(
    db: AsyncSession, payout: Payout, *, code: str | None, reason: str, now: datetime
) -> None:
    """Step 3, definite refusal: the money goes back to available, with the reason."""
    cur = payout.currency
    accounts = await coach_accounts(db, payout.coach_id, cur)
    in_transit, available = accounts["in_transit"], accounts["available"]
    result = await post(
        db,
        type=TxType.PAYOUT_FAILED,
        idempotency_key=f"payout_failed:{payout.id}",
        occurred_at=now,
        legs=[Leg(in_transit, payout.amount, cur), Leg(available, -payout.amount, cur)],
        coach_id=payout.coach_id,
        payout_id=payout.id,
        description=reason[:_MAX_TEXT],
    )
    check_payout_transition(payout.status, FAILED)
    payout.status = FAILED
    payout.failure_code = code
    payout.failure_reason = reason[:_MAX_TEXT]
    payout.failure_transaction_id = result.transaction_id
    payout.failed_at = now
    payout.next_attempt_at = None
    payout.updated_at = now
    # The earnings are free for the next payout again.
    await db.execute(update(Earning).where(Earning.payout_id == payout.id).values(payout_id=None))
    await db.flush()


def wait_for_funds(payout: Payout, *, message: str, now: datetime) -> None:
    """Platform funds short (``balance_insufficient``): not the coach's fault, retried later.

    Stripe stores the refusal under the idempotency key, so the next attempt
    must use a new one; safe, since a refusal means no transfer was made."""
    check_payout_transition(payout.status, WAITING_FUNDS)
    payout.status = WAITING_FUNDS
    payout.key_generation += 1
    payout.last_error = message[:_MAX_TEXT]
    waits = max(payout.attempts, 1)
    payout.next_attempt_at = now + min(WAIT_BACKOFF_BASE * 2 ** (waits - 1), WAIT_BACKOFF_CAP)
    payout.updated_at = now


def leave_pending(payout: Payout, *, message: str, now: datetime) -> None:
    """Unknown outcome: the transfer may exist. Due again on the next run, same key."""
    check_payout_transition(payout.status, PENDING)
    payout.status = PENDING
    payout.last_error = message[:_MAX_TEXT]
    payout.next_attempt_at = now
    payout.updated_at = now
