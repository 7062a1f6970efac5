"""Hold release: due earnings move from the coach's pending to available balance.

One journal transaction per earning (``release:earning:<id>``, type
``hold_release``): ``pending +X`` (debit: less owed as pending),
``available -X`` (credit: more owed as available), where
``X = amount - reduced_before_release`` (refunds and disputes taken out of the
pending balance before release). An earning with nothing left to release is
cancelled instead. The batch is posted in ONE database round trip (each
earning still gets its own idempotent ledger transaction), which is what makes
100,000 releases cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import TxType, translate_db_error

AccountCache = dict[tuple[int, str, str], int]

# Keyset from the last row this run claimed: released rows stay in the partial
# index as dead entries until vacuum, and re-scanning them from the start on
# every batch made a 100,000-row release quadratic.
_CLAIM = text(
    "SELECT id, coach_id, currency, amount - reduced_before_release AS net, available_at "
    "FROM earnings WHERE status = 'pending' AND available_at <= :now "
    "AND (available_at, id) > (:after_at, :after_id) "
    "ORDER BY available_at, id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_START = (datetime(1970, 1, 1, tzinfo=UTC), 0)
Cursor = tuple[datetime, int]
_CANCEL = text("UPDATE earnings SET status = 'cancelled' WHERE id = ANY(:ids)")
_POST_MANY = text(
    "SELECT x.eid, p.transaction_id FROM jsonb_to_recordset(CAST(:batch AS jsonb)) "
    "AS x(eid BIGINT, k TEXT, at TIMESTAMPTZ, legs JSONB, attrs JSONB) "
    "CROSS JOIN LATERAL ledger_post(:type, x.k, x.at, x.legs, x.attrs) p"
)
_MARK = text(
    "UPDATE earnings e SET status = 'available', release_transaction_id = v.tx, "
    "released_at = :now FROM unnest(CAST(:ids AS bigint[]), CAST(:txs AS bigint[])) AS v(id, tx) "
    "WHERE e.id = v.id"
)
_ACCOUNTS = text(
    "SELECT owner_id, currency, kind, id FROM ledger_accounts WHERE owner_type = 'coach' "
    "AND kind IN ('pending', 'available') AND (owner_id, currency) IN "
    "(SELECT * FROM unnest(CAST(:coaches AS bigint[]), CAST(:currencies AS varchar[])))"
)


@dataclass(frozen=True, slots=True)
class ReleaseBatch:
    released: int
    cancelled: int
    amount: int  # total moved to available, all currencies mixed (for logs only)
    last: Cursor | None = None  # the last row claimed: where the next batch starts

    @property
    def claimed(self) -> int:
        return self.released + self.cancelled


def release_key(earning_id: int) -> str:
    return f"release:earning:{earning_id}"


async def _account_ids(db: AsyncSession, pairs: set[tuple[int, str]], cache: AccountCache) -> None:
    """Fill ``cache`` with the pending and available accounts of ``pairs``: one query
    for those that exist, ``get_account_id`` (which creates) for the rest."""
    # Sorted: concurrent workers create and lock accounts in one global order,
    # so they can wait on each other but never deadlock.
    wanted = sorted((c, cur) for c, cur in pairs if (c, cur, "available") not in cache)
    if not wanted:
        return
    rows = await db.execute(
        _ACCOUNTS, {"coaches": [c for c, _ in wanted], "currencies": [cur for _, cur in wanted]}
    )
    for owner_id, currency, kind, account_id in rows:
        cache[(int(owner_id), currency, kind)] = int(account_id)
    for coach_id, currency in wanted:
        for kind in (Kind.PENDING, Kind.AVAILABLE):
            if (coach_id, currency, kind.value) not in cache:
                ref = AccountRef.coach(coach_id, kind, currency)
                cache[(coach_id, currency, kind.value)] = await get_account_id(db, ref)


async def release_due(
    db: AsyncSession,
    *,
    now: datetime,
    limit: int,
    cache: AccountCache | None = None,
    after: Cursor | None = None,
) -> ReleaseBatch:
    """Claim up to ``limit`` due earnings (skipping rows another worker holds) and release them.

    Flushes; the caller commits. Rows claimed here stay locked until then, so
    a concurrent release, refund or payout of the same earning waits or skips.
    """
    cache = {} if cache is None else cache
    after_at, after_id = after or _START
    params = {"now": now, "limit": limit, "after_at": after_at, "after_id": after_id}
    rows = (await db.execute(_CLAIM, params)).all()
    if not rows:
        return ReleaseBatch(0, 0, 0)
    last = (rows[-1].available_at, int(rows[-1].id))
    zero = [int(r.id) for r in rows if r.net <= 0]
    # Posted in (coach, currency) order for the same reason: two batches that
    # share coaches lock those balances in the same order.
    due = sorted((r for r in rows if r.net > 0), key=lambda r: (r.coach_id, r.currency, r.id))
    if zero:
        await db.execute(_CANCEL, {"ids": zero})
    if not due:
        return ReleaseBatch(0, len(zero), 0, last)
    await _account_ids(db, {(int(r.coach_id), r.currency) for r in due}, cache)
    batch = []
    for r in due:
        pending = cache[(int(r.coach_id), r.currency, "pending")]
        available = cache[(int(r.coach_id), r.currency, "available")]
        batch.append(
            {
                "eid": int(r.id),
                "k": release_key(int(r.id)),
                "at": r.available_at.isoformat(),
                "legs": [
                    {"account_id": pending, "amount": int(r.net), "currency": r.currency},
                    {"account_id": available, "amount": -int(r.net), "currency": r.currency},
                ],
                "attrs": {"coach_id": int(r.coach_id), "description": f"earning {r.id}"},
            }
        )
    try:
        posted = (
            await db.execute(
                _POST_MANY, {"batch": json.dumps(batch), "type": str(TxType.HOLD_RELEASE)}
            )
        ).all()
    except DBAPIError as exc:
        domain = translate_db_error(exc)
        if domain is None:
            raise
        raise domain from exc
    tx_of = {int(eid): int(tx) for eid, tx in posted}
    ids = [int(r.id) for r in due]
    await db.execute(_MARK, {"ids": ids, "txs": [tx_of[i] for i in ids], "now": now})
    return ReleaseBatch(len(due), len(zero), sum(int(r.net) for r in due), last)
