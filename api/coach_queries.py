"""What the coach page reads besides the balance (``payouts.views.coach_balance``, the
same read as ``GET /v1/coaches/me/balance``): money earned net of refunds and disputes,
each earning's net share, the coach's sessions with who booked them, the coach list.

"Earned" is what the coach's business events did to what they are owed: the coach legs
of payments, refunds (and failed refunds' reversals) and disputes, from the ledger. Moves
between the coach's own accounts (release, payout) and payouts made are not earnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from sessions.catalog import SessionView, list_sessions

EARNING_TYPES = ("session_payment", "refund", "dispute")
_COACH_LEGS = (
    "FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
    "JOIN ledger_accounts a ON a.id = e.account_id "
    "WHERE t.coach_id = :c AND a.owner_type = 'coach' AND a.owner_id = :c "
    "AND t.type IN ('session_payment', 'refund', 'dispute') "
)


async def earned_by_day(
    db: AsyncSession,
    coach_id: int,
    *,
    currency: str | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, dict[str, int]]:
    """currency -> UTC day (ISO) -> net earned that day (a refund day may be negative)."""
    conds: list[str] = []
    params: dict[str, Any] = {"c": coach_id}
    if currency:
        conds.append("AND e.currency = :cur")
        params["cur"] = currency
    if start:
        conds.append("AND t.occurred_at >= :s")
        params["s"] = start
    if end:
        conds.append("AND t.occurred_at < :e")
        params["e"] = end
    rows = await db.execute(
        text(
            "SELECT e.currency, (t.occurred_at AT TIME ZONE 'UTC')::date AS day, "
            f"-sum(e.amount) AS earned {_COACH_LEGS} {' '.join(conds)} "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        params,
    )
    out: dict[str, dict[str, int]] = {}
    for cur, day, earned in rows:
        out.setdefault(cur, {})[day.isoformat()] = int(earned)
    return out


async def net_shares(db: AsyncSession, coach_id: int, booking_ids: list[int]) -> dict[int, int]:
    """booking id -> the coach's share of it after its refunds and disputes."""
    if not booking_ids:
        return {}
    rows = await db.execute(
        text(
            f"SELECT t.booking_id, -sum(e.amount) {_COACH_LEGS} "
            "AND t.booking_id = ANY(:ids) GROUP BY 1"
        ),
        {"c": coach_id, "ids": booking_ids},
    )
    return {int(b): int(v) for b, v in rows}


@dataclass
class Attendee:
    booking_id: int
    mentee: str
    status: str
    amount: int
    amount_refunded: int
    currency: str


@dataclass
class SessionRow:
    view: SessionView
    attendees: list[Attendee] = field(default_factory=list)

    @property
    def s(self) -> Any:
        return self.view.session


async def coach_sessions(
    db: AsyncSession, coach_id: int, *, clock: Clock, limit: int = 40
) -> list[SessionRow]:
    """The coach's sessions, soonest first (past and cancelled ones too), each with the
    bookings made for it and their state."""
    views = await list_sessions(db, clock=clock, coach_id=coach_id, include_past=True, limit=500)
    now = clock.now()
    # Upcoming first (soonest first), then the most recent past ones.
    ahead = [v for v in views if v.session.starts_at > now]
    past = sorted((v for v in views if v.session.starts_at <= now),
                  key=lambda v: v.session.starts_at, reverse=True)  # fmt: skip
    chosen = (ahead + past)[:limit]
    rows = {v.session.id: SessionRow(v) for v in chosen}
    if rows:
        found = await db.execute(
            text(
                "SELECT b.coaching_session_id, b.id, COALESCE(u.display_name, u.sub), b.status, "
                "b.amount, b.amount_refunded, b.currency FROM bookings b "
                "JOIN users u ON u.id = b.mentee_id WHERE b.coaching_session_id = ANY(:ids) "
                "ORDER BY b.id"
            ),
            {"ids": list(rows)},
        )
        for sid, bid, name, status, amount, refunded, cur in found:
            rows[sid].attendees.append(Attendee(bid, name, status, amount, refunded, cur))
    return list(rows.values())


async def coach_name(db: AsyncSession, coach_id: int) -> str | None:
    """The coach's name, or None when no coach has this id."""
    row = (
        await db.execute(
            text(
                "SELECT COALESCE(p.display_name, u.display_name, u.sub) FROM users u "
                "LEFT JOIN coach_profiles p ON p.user_id = u.id "
                "WHERE u.id = :c AND (u.role = 'coach' OR p.user_id IS NOT NULL)"
            ),
            {"c": coach_id},
        )
    ).scalar_one_or_none()
    return None if row is None else str(row)


async def coach_list(db: AsyncSession, *, limit: int = 200) -> list[dict[str, Any]]:
    """Every coach (for finance staff to pick one): id, name, Connect status."""
    rows = await db.execute(
        text(
            "SELECT u.id, COALESCE(p.display_name, u.display_name, u.sub) AS name, "
            "COALESCE(c.status, 'not_started') AS status FROM users u "
            "LEFT JOIN coach_profiles p ON p.user_id = u.id "
            "LEFT JOIN connect_accounts c ON c.coach_id = u.id "
            "WHERE u.role = 'coach' OR p.user_id IS NOT NULL ORDER BY u.id LIMIT :n"
        ),
        {"n": limit},
    )
    return [dict(r._mapping) for r in rows]
