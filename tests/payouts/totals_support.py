"""Helpers for the coach_money_totals tests: random money events on earnings and
payouts rows, done the way the services do them, and the sums the totals must equal."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sessions.earnings import return_share, take_share
from tests.payouts.helpers import T0

# Coach ids far from the users the other tests make (earnings and payouts have no
# foreign key to users), and booking ids the earnings can be found by.
_coach_ids = itertools.count(50_000_000)
_booking_ids = itertools.count(90_000_000)


def new_coaches(n: int) -> list[int]:
    return [next(_coach_ids) for _ in range(n)]


@dataclass(frozen=True)
class World:
    coaches: list[int]
    currencies: tuple[str, ...] = ("usd", "eur")


async def earn(db: AsyncSession, coach: int, currency: str, amount: int, hours: int) -> None:
    """What sessions.earnings.create_earning inserts (one row, ON CONFLICT DO NOTHING)."""
    fee = amount // 4 + 1
    await db.execute(
        text(
            "INSERT INTO earnings (coach_id, booking_id, currency, gross, platform_fee, amount, "
            "available_at, status, created_at) VALUES (:c, :b, :cur, :g, :f, :a, :at, 'pending', "
            ":t) ON CONFLICT (booking_id) DO NOTHING"
        ),
        {
            "c": coach,
            "b": next(_booking_ids),
            "cur": currency,
            "g": amount + fee,
            "f": fee,
            "a": amount,
            "at": T0 + timedelta(hours=hours),
            "t": T0,
        },
    )


async def earn_many(db: AsyncSession, world: World, amounts: list[int]) -> None:
    """Several coaches' earnings in ONE statement (a bulk load): the statement trigger
    groups them by coach and currency."""
    rows = [
        (world.coaches[i % len(world.coaches)], world.currencies[i % 2], a, next(_booking_ids))
        for i, a in enumerate(amounts)
    ]
    await db.execute(
        text(
            "INSERT INTO earnings (coach_id, booking_id, currency, gross, platform_fee, amount, "
            "available_at, status, created_at) "
            "SELECT r.c, r.b, r.cur, r.a + 1, 1, r.a, :at, 'pending', :at "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(c bigint, cur text, a bigint, "
            "b bigint)"
        ),
        {
            "rows": _json([{"c": c, "cur": cur, "a": a, "b": b} for c, cur, a, b in rows]),
            "at": T0 + timedelta(hours=1),
        },
    )


async def pick_booking(db: AsyncSession, world: World, n: int, status: str) -> int | None:
    ids = (
        await db.execute(
            text(
                "SELECT booking_id FROM earnings WHERE coach_id = ANY(:c) AND status = :s "
                "ORDER BY id"
            ),
            {"c": world.coaches, "s": status},
        )
    ).scalars()
    found = list(ids)
    return int(found[n % len(found)]) if found else None


async def refund_before_release(db: AsyncSession, world: World, n: int, amount: int) -> None:
    booking = await pick_booking(db, world, n, "pending")
    if booking is not None:
        await take_share(db, booking, amount)  # the real service: refunds and disputes


async def dispute_won(db: AsyncSession, world: World, n: int, amount: int) -> None:
    booking = await pick_booking(db, world, n, "cancelled") or await pick_booking(
        db, world, n, "pending"
    )
    if booking is not None:
        await return_share(db, booking, amount)


async def release(db: AsyncSession, world: World, n: int) -> None:
    """The release job's status update (changes no total)."""
    booking = await pick_booking(db, world, n, "pending")
    if booking is not None:
        await db.execute(
            text(
                "UPDATE earnings SET status = 'available', released_at = :t WHERE booking_id = :b"
            ),
            {"b": booking, "t": T0},
        )


async def payout(db: AsyncSession, coach: int, currency: str, amount: int, outcome: str) -> None:
    """Reserve (insert pending), then settle as the payout job does: paid or failed."""
    pid = (
        await db.execute(
            text(
                "INSERT INTO payouts (coach_id, currency, amount, status, destination, created_at,"
                " updated_at) VALUES (:c, :cur, :a, 'pending', 'acct_t', :t, :t) RETURNING id"
            ),
            {"c": coach, "cur": currency, "a": amount, "t": T0},
        )
    ).scalar_one()
    if outcome == "paid":
        await db.execute(
            text(
                "UPDATE payouts SET status = 'paid', stripe_transfer_id = 'tr_t' || id, "
                "settled_at = :t, attempts = attempts + 1 WHERE id = :id"
            ),
            {"id": pid, "t": T0},
        )
    elif outcome == "failed":
        await db.execute(
            text("UPDATE payouts SET status = 'failed', failed_at = :t WHERE id = :id"),
            {"id": pid, "t": T0},
        )
    else:  # left open: settle it as failed so the next payout may open (one open per coach)
        await db.execute(
            text("UPDATE payouts SET status = 'waiting_funds' WHERE id = :id"), {"id": pid}
        )
        await db.execute(
            text("UPDATE payouts SET status = 'failed', failed_at = :t WHERE id = :id"),
            {"id": pid, "t": T0},
        )


async def reverse(db: AsyncSession, world: World, n: int, amount: int) -> None:
    """transfer.reversed: reversed_amount grows, capped at the amount."""
    ids = list(
        (
            await db.execute(
                text("SELECT id FROM payouts WHERE coach_id = ANY(:c) AND status = 'paid' "
                     "ORDER BY id"),
                {"c": world.coaches},
            )
        ).scalars()
    )  # fmt: skip
    if ids:
        await db.execute(
            text(
                "UPDATE payouts SET reversed_amount = least(amount, reversed_amount + :x) "
                "WHERE id = :id"
            ),
            {"id": ids[n % len(ids)], "x": amount},
        )


_SUMS = text(
    "SELECT k.coach_id, k.currency, "
    "(SELECT COALESCE(sum(p.amount - p.reversed_amount), 0) FROM payouts p "
    "  WHERE p.coach_id = k.coach_id AND p.currency = k.currency AND p.status = 'paid'), "
    "(SELECT COALESCE(sum(e.amount - e.reduced_before_release), 0) FROM earnings e "
    "  WHERE e.coach_id = k.coach_id AND e.currency = k.currency) "
    "FROM (SELECT coach_id, currency FROM earnings UNION SELECT coach_id, currency FROM payouts) k "
    "WHERE k.coach_id = ANY(:c)"
)
_TOTALS = text(
    "SELECT coach_id, currency, sum(paid_out), sum(lifetime_earnings) FROM coach_money_totals "
    "WHERE coach_id = ANY(:c) GROUP BY 1, 2"
)


async def sums_and_totals(
    db: Any, coaches: list[int]
) -> tuple[dict[tuple[int, str], tuple[int, int]], dict[tuple[int, str], tuple[int, int]]]:
    """(sums over the rows, the totals), per (coach, currency): (paid out, lifetime)."""
    sums = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in await db.execute(_SUMS, {"c": coaches})}
    totals = {
        (r[0], r[1]): (int(r[2]), int(r[3])) for r in await db.execute(_TOTALS, {"c": coaches})
    }
    return sums, totals


_NEXT = text(
    "SELECT min(available_at) FROM earnings WHERE coach_id = :c AND currency = :cur "
    "AND status = 'pending'"
)
_NEXT_AMOUNT = text(
    "SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings WHERE coach_id = :c "
    "AND currency = :cur AND status = 'pending' AND available_at = :at"
)


async def next_release(db: Any, coach: int, currency: str) -> tuple[Any, int]:
    """The next release by brute force (the read model's old queries)."""
    at = (await db.execute(_NEXT, {"c": coach, "cur": currency})).scalar_one()
    if at is None:
        return None, 0
    amount = (await db.execute(_NEXT_AMOUNT, {"c": coach, "cur": currency, "at": at})).scalar_one()
    return at, int(amount)


def _json(value: object) -> str:
    import json

    return json.dumps(value)
