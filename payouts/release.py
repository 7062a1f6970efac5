"""Hold release: due earnings move from the coach's pending to available balance.

One journal transaction per coach and currency in a claimed batch (type
``hold_release``): ``pending +X`` (debit: less owed as pending), ``available
-X`` (credit: more owed as available), where X sums ``amount -
reduced_before_release`` (refunds and disputes taken out of the pending balance
before release) over that coach's earnings in the batch; each earning records
the transaction that released it. An earning with nothing left to release is
cancelled instead. The whole batch is posted in ONE database round trip.

Idempotency: the key names the exact set of earnings it releases
(``release:<coach>:<currency>:<count>:<sha256 of the ids>``), and the earnings
are marked ``available`` in the same database transaction as the posting, under
the claim's row locks: a crash rolls both back, a re-run claims them again and
posts them once, and an earning already released is never claimed again.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import TxType, translate_db_error

AccountCache = dict[tuple[int, str, str], int]

# Claimed coach by coach (ix_earnings_next_release), so a batch holds few coaches
# and posts one transaction per coach and currency, not one per earning. Keyset
# from the last row this run claimed: released rows stay in the partial index as
# dead entries until vacuum, and re-scanning them from the start on every batch
# made a 100,000-row release quadratic.
_CLAIM = text(
    "SELECT id, coach_id, currency, amount - reduced_before_release AS net, available_at "
    "FROM earnings WHERE status = 'pending' AND available_at <= :now "
    "AND (coach_id, currency, available_at, id) > (:after_coach, :after_cur, :after_at, :after_id) "
    "ORDER BY coach_id, currency, available_at, id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_START = (0, "", datetime(1970, 1, 1, tzinfo=UTC), 0)
Cursor = tuple[int, str, datetime, int]
_CANCEL = text("UPDATE earnings SET status = 'cancelled' WHERE id = ANY(:ids)")
_POST_MANY = text(
    "SELECT x.g, p.transaction_id FROM jsonb_to_recordset(CAST(:batch AS jsonb)) "
    "AS x(g INT, k TEXT, at TIMESTAMPTZ, legs JSONB, attrs JSONB) "
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


def release_key(coach_id: int, currency: str, earning_ids: list[int]) -> str:
    """The key of one release of exactly these earnings (in any order)."""
    ids = sorted(earning_ids)
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()
    return f"release:{coach_id}:{currency}:{len(ids)}:{digest}"


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
    after_coach, after_cur, after_at, after_id = after or _START
    params = {
        "now": now,
        "limit": limit,
        "after_coach": after_coach,
        "after_cur": after_cur,
        "after_at": after_at,
        "after_id": after_id,
    }
    rows = (await db.execute(_CLAIM, params)).all()
    if not rows:
        return ReleaseBatch(0, 0, 0)
    end = rows[-1]
    last = (int(end.coach_id), end.currency, end.available_at, int(end.id))
    zero = [int(r.id) for r in rows if r.net <= 0]
    # Claimed and posted in (coach, currency) order for the same reason: two
    # batches that share coaches lock those balances in the same order.
    due = [r for r in rows if r.net > 0]
    if zero:
        await db.execute(_CANCEL, {"ids": zero})
    if not due:
        return ReleaseBatch(0, len(zero), 0, last)
    await _account_ids(db, {(int(r.coach_id), r.currency) for r in due}, cache)
    groups: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for r in due:
        groups[(int(r.coach_id), r.currency)].append(r)
    batch = []
    for g, ((coach_id, currency), members) in enumerate(groups.items()):
        net = sum(int(r.net) for r in members)
        ids = [int(r.id) for r in members]
        batch.append(
            {
                "g": g,
                "k": release_key(coach_id, currency, ids),
                "at": max(r.available_at for r in members).isoformat(),
                "legs": [
                    {"account_id": cache[(coach_id, currency, "pending")], "amount": net,
                     "currency": currency},
                    {"account_id": cache[(coach_id, currency, "available")], "amount": -net,
                     "currency": currency},
                ],
                "attrs": {
                    "coach_id": coach_id,
                    "description": f"hold release of {len(ids)} earning(s) from {ids[0]}",
                    "metadata": {"earnings": len(ids)},
                },
            }
        )  # fmt: skip
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
    tx_of_group = {int(g): int(tx) for g, tx in posted}
    ids, txs = [], []
    for g, members in enumerate(groups.values()):
        for r in members:
            ids.append(int(r.id))
            txs.append(tx_of_group[g])
    await db.execute(_MARK, {"ids": ids, "txs": txs, "now": now})
    return ReleaseBatch(len(due), len(zero), sum(int(r.net) for r in due), last)
