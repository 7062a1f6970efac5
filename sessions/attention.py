"""Refunds that need a person: what the automatic paths could not make good.

Three kinds, each open until the money has gone back to the mentee:

- ``refund_refused``: a cancelled session's refund that Stripe refused (a
  disputed charge, say). Open while the booking has money not refunded.
- ``refund_failed``: a refund Stripe accepted and later failed or cancelled
  (any source: the mentee, the coach, an admin, the cancellation, the
  automatic refund of a late payment). Open until refunds of the same
  booking made after the failure, and not failed, add up to its amount.
  ``since`` is the failure (its booking event), else the refund's creation.
  ``retried_automatically``: the booking belongs to a cancelled session
  whose settle job will try again (sessions/cancellation.py), so nobody
  needs to act yet.

- ``refund_unbooked``: a refund Stripe made that we refused to book
  (sessions/refund_apply.py): more than the booking still held, or in
  another currency. Stripe moved the money; finance reconciles it by hand.
  Open while no refund of that Stripe id is booked (nothing closes it on
  its own yet: a known gap).

Known gap: a failed *automatic* refund leaves the booking counted as refunded
(the money is the mentee's, not the coach's again), so ``POST .../refund``
answers 409 and a refund made in Stripe's dashboard is not recorded against
it: such an item stays listed after finance has paid the mentee back.

A person acts with ``POST /v1/bookings/{id}/refund`` (as an admin) or in
Stripe's dashboard; the item disappears once that refund is not failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sessions.cancellation import REFUSED_CAUSE, owed_filter
from sessions.refund_apply import REFUND_UNBOOKED_CAUSE
from sessions.refund_failures import FAILED_STATUSES

MAX_PAGE = 200
_FAILED = ", ".join(f"'{s}'" for s in FAILED_STATUSES)
_OWED = owed_filter()

# One row per open item, newest first; ``key`` orders and pages them
# (``since`` then a kind-tagged id, unique across both kinds).
_ITEMS = text(
    "WITH refused AS ("
    "  SELECT DISTINCT ON (e.booking_id) 'refund_refused' AS kind, e.booking_id,"
    "    NULL::bigint AS refund_id, NULL::text AS stripe_refund_id,"
    "    b.amount - b.amount_refunded AS amount, e.at AS since,"
    "    e.detail ->> 'error' AS detail, FALSE AS retried, 'x' || e.id AS tag"
    "  FROM booking_events e JOIN bookings b ON b.id = e.booking_id"
    f"  WHERE e.cause = '{REFUSED_CAUSE}' AND b.amount_refunded < b.amount"
    "  ORDER BY e.booking_id, e.at DESC, e.id DESC"
    "), failed AS ("
    "  SELECT 'refund_failed' AS kind, r.booking_id, r.id AS refund_id, r.stripe_refund_id,"
    "    r.amount, COALESCE(f.at, r.created_at) AS since, r.reason AS detail,"
    "    EXISTS (SELECT 1 FROM bookings b JOIN coaching_sessions s"
    f"      ON s.id = b.coaching_session_id WHERE b.id = r.booking_id AND {_OWED}) AS retried,"
    "    'r' || r.id AS tag"
    "  FROM refunds r LEFT JOIN LATERAL (SELECT max(e.at) AS at FROM booking_events e"
    "    WHERE e.booking_id = r.booking_id AND e.cause IN ('refund_failed', 'auto_refund_failed')"
    "    AND e.detail ->> 'refund' = r.stripe_refund_id) f ON TRUE"
    f"  WHERE r.status IN ({_FAILED})"
    "  AND COALESCE((SELECT sum(l.amount) FROM refunds l WHERE l.booking_id = r.booking_id"
    f"    AND l.status NOT IN ({_FAILED}) AND l.created_at >= COALESCE(f.at, r.created_at)), 0)"
    "    < r.amount"
    "), unbooked AS ("
    f"  SELECT DISTINCT ON (e.detail ->> 'refund') '{REFUND_UNBOOKED_CAUSE}' AS kind,"
    "    e.booking_id, NULL::bigint AS refund_id, e.detail ->> 'refund' AS stripe_refund_id,"
    "    CAST(e.detail ->> 'amount' AS bigint) AS amount, e.at AS since,"
    "    e.detail ->> 'error' AS detail, FALSE AS retried, 'u' || e.id AS tag"
    "  FROM booking_events e"
    f"  WHERE e.cause = '{REFUND_UNBOOKED_CAUSE}' AND NOT EXISTS (SELECT 1 FROM refunds l"
    "    WHERE l.stripe_refund_id = e.detail ->> 'refund')"
    "  ORDER BY e.detail ->> 'refund', e.at, e.id"
    ")"
    " SELECT i.*, b.coaching_session_id, b.coach_id, b.mentee_id, b.currency,"
    "   b.amount AS paid, b.amount_refunded, s.status AS session_status"
    " FROM (SELECT * FROM refused UNION ALL SELECT * FROM failed"
    "   UNION ALL SELECT * FROM unbooked) i"
    " JOIN bookings b ON b.id = i.booking_id"
    " JOIN coaching_sessions s ON s.id = b.coaching_session_id"
    " WHERE CAST(:before_at AS timestamptz) IS NULL"
    "   OR (i.since, i.tag) < (CAST(:before_at AS timestamptz), CAST(:before_tag AS text))"
    " ORDER BY i.since DESC, i.tag DESC LIMIT :n"
)


@dataclass(frozen=True, slots=True)
class AttentionItem:
    kind: str  # refund_refused | refund_failed | refund_unbooked
    booking_id: int
    coaching_session_id: int
    session_status: str
    coach_id: int
    mentee_id: int
    currency: str
    # what did not go back: the failed refund's, or what the booking still holds;
    # refund_unbooked: what Stripe refunded (in the refund's currency, see detail)
    amount: int
    paid: int
    amount_refunded: int
    since: datetime
    refund_id: int | None
    stripe_refund_id: str | None
    detail: str | None  # Stripe's refusal, or the refund's reason
    retried_automatically: bool
    cursor: tuple[datetime, str]  # pass back as ``before`` for the next page


async def refunds_needing_attention(
    db: AsyncSession, *, limit: int = 50, before: tuple[datetime, str] | None = None
) -> list[AttentionItem]:
    """Open items, newest first; ``before``: the ``cursor`` of the last item of a page."""
    n = max(1, min(limit, MAX_PAGE + 1))  # the route asks one more to know of a next page
    at, tag = before if before is not None else (None, None)
    rows = await db.execute(_ITEMS, {"n": n, "before_at": at, "before_tag": tag})
    return [
        AttentionItem(
            kind=r.kind,
            booking_id=int(r.booking_id),
            coaching_session_id=int(r.coaching_session_id),
            session_status=r.session_status,
            coach_id=int(r.coach_id),
            mentee_id=int(r.mentee_id),
            currency=r.currency,
            amount=int(r.amount),
            paid=int(r.paid),
            amount_refunded=int(r.amount_refunded),
            since=r.since,
            refund_id=None if r.refund_id is None else int(r.refund_id),
            stripe_refund_id=r.stripe_refund_id,
            detail=r.detail,
            retried_automatically=bool(r.retried),
            cursor=(r.since, r.tag),
        )
        for r in rows
    ]
