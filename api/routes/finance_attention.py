"""``GET /v1/finance/refunds/attention``: refunds that failed or were refused and are
not made good yet (sessions/attention.py), newest first, for finance to act on."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get
from litestar.params import QueryParameter

from api.deps import DbSession
from core.errors import InvalidInput
from ledger.reports import decode_keyed_cursor, encode_cursor
from sessions.attention import MAX_PAGE, AttentionItem, refunds_needing_attention

_TAG = re.compile(r"[xr][0-9]{1,19}")
_LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: str.isdigit() takes "²"


class AttentionOut(msgspec.Struct):
    kind: str  # refund_refused | refund_failed | refund_unbooked
    booking_id: int
    coaching_session_id: int
    session_status: str
    coach_id: int
    mentee_id: int
    currency: str
    amount: int  # minor units that did not go back to the mentee
    paid: int
    amount_refunded: int
    since: datetime
    refund_id: int | None
    stripe_refund_id: str | None
    detail: str | None
    retried_automatically: bool


class AttentionPage(msgspec.Struct):
    data: list[AttentionOut]
    next_cursor: str | None


def _decode(cursor: str) -> tuple[datetime, str]:
    when, tag = decode_keyed_cursor(cursor)
    if not _TAG.fullmatch(tag):
        raise InvalidInput("invalid cursor", field="cursor")
    return when, tag


def _out(item: AttentionItem) -> AttentionOut:
    return AttentionOut(**{f: getattr(item, f) for f in AttentionOut.__struct_fields__})


@get("/refunds/attention")
async def get_refunds_attention(
    db: DbSession,
    limit: Annotated[str | None, QueryParameter(max_length=20)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
) -> AttentionPage:
    """Refunds Stripe refused or failed that nobody has made good since. Act with
    ``POST /v1/bookings/{id}/refund`` as an admin (or in Stripe's dashboard);
    ``retried_automatically``: the cancelled session's settle job tries again."""
    size = 50
    if limit is not None and limit != "":
        if not _LIMIT.fullmatch(limit) or not 1 <= int(limit) <= MAX_PAGE:
            raise InvalidInput(f"must be an integer between 1 and {MAX_PAGE}", field="limit")
        size = int(limit)
    before = _decode(cursor) if cursor else None
    items = await refunds_needing_attention(db, limit=size + 1, before=before)
    page = items[:size]
    more = len(items) > size
    return AttentionPage(
        data=[_out(i) for i in page],
        next_cursor=encode_cursor(*page[-1].cursor) if more and page else None,
    )
