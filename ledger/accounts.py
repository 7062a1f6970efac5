"""Ledger accounts: one per (owner, kind, currency), balances read in O(1).

Sign convention, written down once: a debit is positive, a credit negative.
Platform assets and expenses (``stripe_balance``, ``processing_fees``,
``dispute_losses``) carry positive balances; liabilities and revenue (every
coach account, ``fee_revenue``) carry negative ones. What a coach is owed is
therefore ``-balance`` of their accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.money import check_currency
from ledger.errors import AccountNotFound
from ledger.models import Account


class OwnerType(StrEnum):
    PLATFORM = "platform"
    COACH = "coach"


class Kind(StrEnum):
    # platform
    STRIPE_BALANCE = "stripe_balance"
    FEE_REVENUE = "fee_revenue"
    PROCESSING_FEES = "processing_fees"
    DISPUTES = "disputes"
    DISPUTE_LOSSES = "dispute_losses"
    # coach
    PENDING = "pending"
    AVAILABLE = "available"
    IN_TRANSIT = "in_transit"


PLATFORM_KINDS = frozenset(
    {
        Kind.STRIPE_BALANCE,
        Kind.FEE_REVENUE,
        Kind.PROCESSING_FEES,
        Kind.DISPUTES,
        Kind.DISPUTE_LOSSES,
    }
)
COACH_KINDS = frozenset({Kind.PENDING, Kind.AVAILABLE, Kind.IN_TRANSIT})
# Every session payment touches these: spread them over balance slots. A
# coach's ``pending`` is credited by every payment for that coach, so a busy
# coach would serialise their payments on one row (bench/ledger.py measured
# hot/spread 0.4 with one slot, 0.8-1.1 with 16). ``available`` and
# ``in_transit`` stay single rows: payouts lock them to read an exact balance.
HOT_KINDS = frozenset({Kind.STRIPE_BALANCE, Kind.FEE_REVENUE, Kind.PROCESSING_FEES, Kind.PENDING})


@dataclass(frozen=True, slots=True)
class AccountRef:
    owner_type: OwnerType
    owner_id: int
    kind: Kind
    currency: str

    @classmethod
    def platform(cls, kind: Kind, currency: str) -> AccountRef:
        return cls(OwnerType.PLATFORM, 0, kind, currency)

    @classmethod
    def coach(cls, coach_id: int, kind: Kind, currency: str) -> AccountRef:
        return cls(OwnerType.COACH, coach_id, kind, currency)

    def __str__(self) -> str:
        owner = "platform" if self.owner_type is OwnerType.PLATFORM else f"coach:{self.owner_id}"
        return f"{owner}/{self.kind}/{self.currency}"


async def get_account_id(db: AsyncSession, ref: AccountRef, *, hot_slots: int = 16) -> int:
    """The account's id, creating it (and its balance slots) on first use."""
    check_currency(ref.currency)
    if ref.owner_type is OwnerType.PLATFORM and ref.kind not in PLATFORM_KINDS:
        raise AccountNotFound(f"no platform account kind {ref.kind}")
    if ref.owner_type is OwnerType.COACH and ref.kind not in COACH_KINDS:
        raise AccountNotFound(f"no coach account kind {ref.kind}")
    found = await db.execute(
        text(
            "SELECT id FROM ledger_accounts WHERE owner_type = :t AND owner_id = :o "
            "AND kind = :k AND currency = :c"
        ),
        {"t": ref.owner_type.value, "o": ref.owner_id, "k": ref.kind.value, "c": ref.currency},
    )
    account_id = found.scalar_one_or_none()
    if account_id is not None:
        return int(account_id)
    slots = hot_slots if ref.kind in HOT_KINDS else 1
    stmt = (
        insert(Account)
        .values(
            owner_type=ref.owner_type.value,
            owner_id=ref.owner_id,
            kind=ref.kind.value,
            currency=ref.currency,
            slots=slots,
        )
        .on_conflict_do_nothing(constraint="uq_ledger_accounts_owner")
        .returning(Account.id)
    )
    created = (await db.execute(stmt)).scalar_one_or_none()
    if created is None:  # a concurrent first use won the insert
        return await get_account_id(db, ref, hot_slots=hot_slots)
    await db.execute(
        text(
            "INSERT INTO ledger_balance_slots (account_id, slot, balance) "
            "SELECT :a, s, 0 FROM generate_series(0, :n - 1) s ON CONFLICT DO NOTHING"
        ),
        {"a": created, "n": slots},
    )
    return int(created)


async def balance(db: AsyncSession, account_id: int) -> int:
    """Current balance: the sum of the account's slots (1 row, or a few for hot accounts)."""
    row = await db.execute(
        text(
            "SELECT a.id, COALESCE(SUM(s.balance), 0) FROM ledger_accounts a "
            "LEFT JOIN ledger_balance_slots s ON s.account_id = a.id WHERE a.id = :a GROUP BY a.id"
        ),
        {"a": account_id},
    )
    found = row.one_or_none()
    if found is None:
        raise AccountNotFound(f"ledger account {account_id} does not exist")
    return int(found[1])


async def balance_at(db: AsyncSession, account_id: int, at: datetime) -> int:
    """Balance as posted up to ``at``: the latest entry per slot, one index lookup each."""
    row = await db.execute(
        text(
            "SELECT a.id, COALESCE(SUM(e.balance_after), 0) FROM ledger_accounts a "
            "CROSS JOIN LATERAL generate_series(0, a.slots - 1) AS s(slot) "
            "LEFT JOIN LATERAL (SELECT balance_after FROM ledger_entries le "
            "  WHERE le.account_id = a.id AND le.slot = s.slot AND le.created_at <= :at "
            "  ORDER BY le.created_at DESC, le.id DESC LIMIT 1) e ON TRUE "
            "WHERE a.id = :a GROUP BY a.id"
        ),
        {"a": account_id, "at": at},
    )
    found = row.one_or_none()
    if found is None:
        raise AccountNotFound(f"ledger account {account_id} does not exist")
    return int(found[1])


@dataclass(frozen=True, slots=True)
class OwnerBalance:
    kind: str
    currency: str
    balance: int


async def owner_balances(
    db: AsyncSession, owner_type: OwnerType, owner_id: int
) -> list[OwnerBalance]:
    """Every account balance of one owner, in one query over the slot rows."""
    rows = await db.execute(
        text(
            "SELECT a.kind, a.currency, COALESCE(SUM(s.balance), 0) FROM ledger_accounts a "
            "LEFT JOIN ledger_balance_slots s ON s.account_id = a.id "
            "WHERE a.owner_type = :t AND a.owner_id = :o GROUP BY a.kind, a.currency "
            "ORDER BY a.currency, a.kind"
        ),
        {"t": owner_type.value, "o": owner_id},
    )
    return [OwnerBalance(r[0], r[1], int(r[2])) for r in rows]


def coach_owed_by_currency_sql(coach: str) -> str:
    """What a coach is owed per currency (sign flipped: positive = owed), one row per
    currency, as SQL for read models that fold it into a single statement with
    their own reads (one round trip). ``coach`` is the SQL expression of the
    coach's id: a bind parameter or a column of the enclosing query."""
    return (
        "SELECT a.currency, "
        "CAST(-COALESCE(sum(s.balance) FILTER (WHERE a.kind = 'pending'), 0) AS bigint) "
        "AS pending, "
        "CAST(-COALESCE(sum(s.balance) FILTER (WHERE a.kind = 'available'), 0) AS bigint) "
        "AS available, "
        "CAST(-COALESCE(sum(s.balance) FILTER (WHERE a.kind = 'in_transit'), 0) AS bigint) "
        "AS in_transit "
        "FROM ledger_accounts a LEFT JOIN ledger_balance_slots s ON s.account_id = a.id "
        f"WHERE a.owner_type = 'coach' AND a.owner_id = {coach} GROUP BY a.currency"
    )


async def coach_balances(db: AsyncSession, coach_id: int) -> dict[str, dict[str, int]]:
    """``{currency: {kind: amount owed to the coach}}`` (sign flipped: positive = owed)."""
    out: dict[str, dict[str, int]] = {}
    for b in await owner_balances(db, OwnerType.COACH, coach_id):
        out.setdefault(b.currency, {k.value: 0 for k in COACH_KINDS})[b.kind] = -b.balance
    return out
