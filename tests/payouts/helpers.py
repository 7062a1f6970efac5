"""Payout test helpers: coaches with Connect accounts, paid earnings, a fake Stripe."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import split
from core.stripe_errors import StripeOutcomeUnknown, StripeRefused
from core.stripe_types import Transfer
from ledger.accounts import AccountRef, Kind, coach_balances, get_account_id
from ledger.models import Earning
from ledger.posting import Leg, TxType, post

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
HOLD = timedelta(hours=72)
_seq = itertools.count(1)


async def make_coach(
    db: AsyncSession,
    *,
    schedule: str = "instant",
    minimum: dict[str, int] | None = None,
    payouts_enabled: bool = True,
    paused: bool = False,
    account: str | None = None,
    in_transit: bool = False,
) -> int:
    """A coach with a Connect account. ``in_transit``: its in-transit ledger account
    made now, as after a first payout, so the job reserves in one statement
    (payouts/hotpath.py) instead of the exact path that creates the account."""
    n = next(_seq)
    coach_id = (
        await db.execute(
            text("INSERT INTO users (sub, role) VALUES (:s, 'coach') RETURNING id"),
            {"s": f"coach-{n}-{id(db)}"},
        )
    ).scalar_one()
    await db.execute(
        text(
            "INSERT INTO coach_profiles (user_id, payout_schedule, minimum_payout, payouts_paused) "
            "VALUES (:u, :s, CAST(:m AS jsonb), :p)"
        ),
        {"u": coach_id, "s": schedule, "m": _json(minimum or {}), "p": paused},
    )
    await db.execute(
        text(
            "INSERT INTO connect_accounts (coach_id, stripe_account_id, payouts_enabled, status) "
            "VALUES (:u, :a, :e, 'active')"
        ),
        {"u": coach_id, "a": account or f"acct_test{coach_id}x{n}", "e": payouts_enabled},
    )
    if in_transit:
        await get_account_id(db, AccountRef.coach(int(coach_id), Kind.IN_TRANSIT, "usd"))
    return int(coach_id)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


async def add_earning(
    db: AsyncSession,
    coach_id: int,
    *,
    gross: int = 10_000,
    currency: str = "usd",
    paid_at: datetime = T0,
    hold: timedelta = HOLD,
    reduced: int = 0,
) -> Earning:
    """What the sessions package does on payment: the split posted, coach pending credited."""
    s = split(gross, 2000)
    key = f"test-payment:{coach_id}:{next(_seq)}"
    stripe = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, currency))
    fees = await get_account_id(db, AccountRef.platform(Kind.FEE_REVENUE, currency))
    pending = await get_account_id(db, AccountRef.coach(coach_id, Kind.PENDING, currency))
    tx = await post(
        db,
        type=TxType.SESSION_PAYMENT,
        idempotency_key=key,
        occurred_at=paid_at,
        legs=[
            Leg(stripe, s.gross, currency),
            Leg(fees, -s.platform_fee, currency),
            Leg(pending, -s.coach_share, currency),
        ],
        coach_id=coach_id,
        coaching_session_id=4242,
    )
    if reduced:  # a refund before release took this much out of pending
        await post(
            db,
            type=TxType.REFUND,
            idempotency_key=key + ":refund",
            occurred_at=paid_at,
            legs=[Leg(pending, reduced, currency), Leg(stripe, -reduced, currency)],
            coach_id=coach_id,
        )
    earning = Earning(
        coach_id=coach_id,
        currency=currency,
        gross=s.gross,
        platform_fee=s.platform_fee,
        amount=s.coach_share,
        reduced_before_release=reduced,
        available_at=paid_at + hold,
        status="pending",
        payment_transaction_id=tx.transaction_id,
        created_at=paid_at,
    )
    db.add(earning)
    await db.flush()
    return earning


async def refund_after_payout(
    db: AsyncSession, coach_id: int, amount: int, currency: str = "usd"
) -> None:
    """What sessions does for a refund of money already paid out: the coach owes it back."""
    stripe = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, currency))
    available = await get_account_id(db, AccountRef.coach(coach_id, Kind.AVAILABLE, currency))
    await post(
        db,
        type=TxType.REFUND,
        idempotency_key=f"test-refund-after:{coach_id}:{next(_seq)}",
        occurred_at=T0,
        legs=[Leg(available, amount, currency), Leg(stripe, -amount, currency)],
        coach_id=coach_id,
    )


async def owed(db: AsyncSession, coach_id: int, currency: str = "usd") -> dict[str, int]:
    return (await coach_balances(db, coach_id)).get(
        currency, {"pending": 0, "available": 0, "in_transit": 0}
    )


async def trial_balance_is_zero(db: AsyncSession) -> bool:
    total = (
        await db.execute(text("SELECT COALESCE(sum(balance), 0) FROM ledger_balance_slots"))
    ).scalar()
    return int(total or 0) == 0


@dataclass
class FakeStripe:
    """Stripe's transfer idempotency in memory: a key replays its first answer."""

    transfers: dict[str, Transfer] = field(default_factory=dict)
    by_key: dict[str, Transfer | StripeRefused] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # Errors raised (in order) before the next create_transfer executes.
    faults: list[Exception] = field(default_factory=list)
    refuse_destinations: dict[str, StripeRefused] = field(default_factory=dict)
    forget_keys: bool = False

    async def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None = None,
        metadata: dict[str, str],
        source_transaction: str | None = None,
        description: str | None = None,
        idempotency_key: str,
    ) -> Transfer:
        self.calls.append(f"create:{idempotency_key}")
        if self.faults:
            fault = self.faults.pop(0)
            if not isinstance(fault, StripeOutcomeUnknown) or "after" not in str(fault):
                raise fault
            # "after commit": the transfer is made, the answer lost
            self._make(amount, currency, destination, transfer_group, metadata, idempotency_key)
            raise fault
        if not self.forget_keys and idempotency_key in self.by_key:
            replay = self.by_key[idempotency_key]
            if isinstance(replay, StripeRefused):
                raise replay
            return replay
        if destination in self.refuse_destinations:
            self.by_key[idempotency_key] = self.refuse_destinations[destination]
            raise self.refuse_destinations[destination]
        return self._make(amount, currency, destination, transfer_group, metadata, idempotency_key)

    def _make(
        self,
        amount: int,
        currency: str,
        destination: str,
        group: str | None,
        metadata: dict[str, str],
        key: str,
    ) -> Transfer:
        tr = Transfer(
            id=f"tr_{len(self.transfers) + 1}",
            amount=amount,
            amount_reversed=0,
            currency=currency,
            destination=destination,
            transfer_group=group,
            metadata=dict(metadata),
            reversed=False,
            source_transaction=None,
            created=0,
        )
        self.transfers[tr.id] = tr
        self.by_key[key] = tr
        return tr

    async def find_transfer_by_metadata(
        self, *, destination: str, transfer_group: str | None, key: str, value: str
    ) -> Transfer | None:
        self.calls.append(f"find:{value}")
        for tr in self.transfers.values():
            if tr.destination == destination and tr.metadata.get(key) == value:
                return tr
        return None

    def for_payout(self, payout_id: int) -> list[Transfer]:
        return [t for t in self.transfers.values() if t.metadata.get("payout_id") == str(payout_id)]
