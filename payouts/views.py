"""What a coach sees of their money: balances, earnings, payouts (read models).

Balances come from the ledger (O(1) per account); "paid out" and "lifetime
earnings" from ``coach_money_totals``, kept by database triggers on the
payouts and earnings rows (migration 0007), since the ledger keeps no
``paid_out`` account (see payouts/service.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db import Fetch, driver_fetch
from ledger.accounts import coach_owed_by_currency_sql

MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class CurrencyBalance:
    currency: str
    pending: int  # held, not yet released
    available: int  # released, not yet paid (negative: owed back after a refund)
    in_transit: int  # reserved by an open payout
    paid_out: int  # paid payouts, less what was reversed
    lifetime_earnings: int  # coach share of every earning, less refunds before release
    next_release_at: datetime | None
    next_release_amount: int


@dataclass(frozen=True, slots=True)
class EarningView:
    id: int
    booking_id: int | None
    coaching_session_id: int | None
    currency: str
    gross: int
    platform_fee: int
    amount: int  # coach share
    reduced_before_release: int
    status: str
    available_at: datetime
    released_at: datetime | None
    payout_id: int | None


@dataclass(frozen=True, slots=True)
class PayoutView:
    id: int
    currency: str
    amount: int
    status: str
    stripe_transfer_id: str | None
    created_at: datetime
    settled_at: datetime | None
    failure_code: str | None
    failure_reason: str | None
    waiting_on_platform_funds: bool
    reversed_amount: int
    retry_of: int | None
    earning_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BankPayoutView:
    stripe_payout_id: str
    currency: str
    amount: int
    status: str
    arrival_date: datetime | None
    failure_code: str | None
    failure_message: str | None


# The whole balance in one statement (one round trip, one snapshot): the ledger
# balances (O(1): slot rows), the lifetime totals (a few slot rows per currency
# kept by the triggers of migration 0007), and the next release (an index lookup
# in ix_earnings_next_release: the earliest pending available_at, then the
# earnings due at that instant). Plain psycopg SQL (``%(name)s``): it runs on
# core.rawpool.RawPool as well as on a SQLAlchemy connection (``driver_fetch``).
def _balance_sql(coach: str) -> str:
    """``coach``: the SQL expression of the coach's id."""
    return (
        f"WITH bal AS ({coach_owed_by_currency_sql(coach)}), "
        "tot AS (SELECT currency, CAST(sum(paid_out) AS bigint) AS paid_out, "
        "  CAST(sum(lifetime_earnings) AS bigint) AS lifetime "
        f"  FROM coach_money_totals WHERE coach_id = {coach} GROUP BY currency) "
        "SELECT c.currency, COALESCE(b.pending, 0) AS pending, "
        "COALESCE(b.available, 0) AS available, COALESCE(b.in_transit, 0) AS in_transit, "
        "COALESCE(t.paid_out, 0) AS paid_out, COALESCE(t.lifetime, 0) AS lifetime, "
        "n.at AS next_at, COALESCE(n.amount, 0) AS next_amount "
        "FROM (SELECT currency FROM bal UNION SELECT currency FROM tot) c "
        "LEFT JOIN bal b ON b.currency = c.currency "
        "LEFT JOIN tot t ON t.currency = c.currency "
        "LEFT JOIN LATERAL (SELECT e.available_at AS at, "
        "  CAST(sum(e.amount - e.reduced_before_release) AS bigint) AS amount FROM earnings e "
        f"  WHERE e.coach_id = {coach} AND e.currency = c.currency AND e.status = 'pending' "
        "  AND e.available_at = (SELECT min(m.available_at) FROM earnings m "
        f"    WHERE m.coach_id = {coach} AND m.currency = c.currency AND m.status = 'pending') "
        "  GROUP BY e.available_at) n ON TRUE"
    )


BALANCE_SQL = _balance_sql("%(coach_id)s") + " ORDER BY c.currency"
# The same for the user behind a token's ``sub``, found only when
# core.users.provision_user would merely read the row (known, same role and
# email, seen recently): the request's user lookup and its balance in one
# round trip. No row: the caller provisions the usual way.
BALANCE_OF_SUB_SQL = (
    "WITH u AS (SELECT id FROM users WHERE sub = %(sub)s AND role = %(role)s "
    "  AND last_seen_at > %(seen_after)s "
    "  AND (CAST(%(email)s AS text) IS NULL OR email = CAST(%(email)s AS text))) "
    f"SELECT u.id AS user_id, b.* FROM u LEFT JOIN LATERAL ({_balance_sql('u.id')}) b "
    "ON TRUE ORDER BY b.currency"
)


def _balance_row(r: Any) -> CurrencyBalance:
    return CurrencyBalance(
        currency=r.currency,
        pending=int(r.pending),
        available=int(r.available),
        in_transit=int(r.in_transit),
        paid_out=int(r.paid_out),
        lifetime_earnings=int(r.lifetime),
        next_release_at=r.next_at,
        next_release_amount=int(r.next_amount),
    )


async def coach_balance(db: AsyncSession | AsyncConnection, coach_id: int) -> list[CurrencyBalance]:
    """Per currency, what the coach is owed and has been paid; cost independent of history."""
    rows = await driver_fetch(db)(BALANCE_SQL, {"coach_id": coach_id})
    return [_balance_row(r) for r in rows]


async def coach_balance_of_sub(
    fetch: Fetch,
    *,
    sub: str,
    role: str,
    email: str | None,
    seen_after: datetime,
) -> tuple[int, list[CurrencyBalance]] | None:
    """(user id, ``coach_balance``) of the user ``sub`` if its row has this role and
    email and ``last_seen_at > seen_after``; None otherwise (provision, then read).

    ``fetch``: ``RawPool.fetch`` on the hot path, ``driver_fetch(db)`` in a transaction."""
    params = {"sub": sub, "role": role, "email": email, "seen_after": seen_after}
    rows = await fetch(BALANCE_OF_SUB_SQL, params)
    if not rows:
        return None
    return int(rows[0].user_id), [_balance_row(r) for r in rows if r.currency is not None]


def _page(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


async def list_earnings(
    db: AsyncSession, coach_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[EarningView]:
    """Newest first; the session comes from the payment's journal transaction."""
    rows = await db.execute(
        text(
            "SELECT e.*, t.coaching_session_id FROM earnings e "
            "LEFT JOIN ledger_transactions t ON t.id = e.payment_transaction_id "
            "WHERE e.coach_id = :c AND (CAST(:before AS bigint) IS NULL OR e.id < :before) "
            "ORDER BY e.id DESC LIMIT :n"
        ),
        {"c": coach_id, "before": before_id, "n": _page(limit)},
    )
    return [
        EarningView(
            id=r.id,
            booking_id=r.booking_id,
            coaching_session_id=r.coaching_session_id,
            currency=r.currency,
            gross=r.gross,
            platform_fee=r.platform_fee,
            amount=r.amount,
            reduced_before_release=r.reduced_before_release,
            status=r.status,
            available_at=r.available_at,
            released_at=r.released_at,
            payout_id=r.payout_id,
        )
        for r in rows
    ]


async def list_payouts(
    db: AsyncSession, coach_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[PayoutView]:
    """Newest first, each with the earnings it paid for (none for a failed one:
    those went back to be paid by a later payout)."""
    rows = await db.execute(
        text(
            "SELECT p.*, COALESCE((SELECT array_agg(e.id ORDER BY e.id) FROM earnings e "
            "  WHERE e.payout_id = p.id), '{}') AS earning_ids "
            "FROM payouts p WHERE p.coach_id = :c "
            "AND (CAST(:before AS bigint) IS NULL OR p.id < :before) ORDER BY p.id DESC LIMIT :n"
        ),
        {"c": coach_id, "before": before_id, "n": _page(limit)},
    )
    return [_payout_view(r) for r in rows]


def _payout_view(r: Any) -> PayoutView:
    return PayoutView(
        id=r.id,
        currency=r.currency,
        amount=r.amount,
        status=r.status,
        stripe_transfer_id=r.stripe_transfer_id,
        created_at=r.created_at,
        settled_at=r.settled_at,
        failure_code=r.failure_code,
        failure_reason=r.failure_reason,
        waiting_on_platform_funds=r.status == "waiting_funds",
        reversed_amount=r.reversed_amount,
        retry_of=r.retry_of,
        earning_ids=list(r.earning_ids),
    )


async def get_payout(db: AsyncSession, payout_id: int) -> tuple[int, PayoutView] | None:
    """(its coach's id, the payout as ``list_payouts`` shows it); None: no such payout."""
    rows = await db.execute(
        text(
            "SELECT p.*, COALESCE((SELECT array_agg(e.id ORDER BY e.id) FROM earnings e "
            "  WHERE e.payout_id = p.id), '{}') AS earning_ids FROM payouts p WHERE p.id = :id"
        ),
        {"id": payout_id},
    )
    r = rows.one_or_none()
    return None if r is None else (int(r.coach_id), _payout_view(r))


async def list_bank_payouts(
    db: AsyncSession, coach_id: int, *, limit: int = 20
) -> list[BankPayoutView]:
    rows = await db.execute(
        text(
            "SELECT * FROM connect_payouts WHERE coach_id = :c "
            "ORDER BY event_created DESC, id DESC LIMIT :n"
        ),
        {"c": coach_id, "n": _page(limit)},
    )
    return [
        BankPayoutView(
            stripe_payout_id=r.stripe_payout_id,
            currency=r.currency,
            amount=r.amount,
            status=r.status,
            arrival_date=r.arrival_date,
            failure_code=r.failure_code,
            failure_message=r.failure_message,
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class PayoutState:
    """Why a coach's payouts may not go out now: a pause (by an admin, or after
    refused transfers: ``payouts_paused_by``) and the refusal backoff."""

    payouts_paused: bool
    payouts_paused_reason: str | None
    payouts_paused_by: str | None  # connect.models.PauseSource
    next_payout_attempt_at: datetime | None  # refusal backoff; None: no wait


PAYOUT_STATE_SQL = (
    "SELECT payouts_paused, payouts_paused_reason, payouts_paused_by, payout_retry_at "
    "FROM coach_profiles WHERE user_id = %(coach_id)s"
)


async def payout_state(fetch: Fetch, coach_id: int, *, now: datetime) -> PayoutState:
    """The coach's payout state at ``now`` (no profile: not paused, no wait)."""
    rows = await fetch(PAYOUT_STATE_SQL, {"coach_id": coach_id})
    if not rows:
        return PayoutState(False, None, None, None)
    r = rows[0]
    retry_at = r.payout_retry_at if r.payout_retry_at and r.payout_retry_at > now else None
    return PayoutState(
        payouts_paused=bool(r.payouts_paused),
        payouts_paused_reason=r.payouts_paused_reason if r.payouts_paused else None,
        payouts_paused_by=r.payouts_paused_by if r.payouts_paused else None,
        next_payout_attempt_at=retry_at,
    )
