"""Finance staff endpoints (finance and admin roles): summary, transactions, payouts,
trial balance, reconciliation (JSON, or CSV with ``Accept: text/csv`` or
``?format=csv``), and the refunds that need a person (JSON)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Response, Router, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream
from sqlalchemy import text

from api import finance_views as fv
from api.auth import require_role
from api.context import AppContext
from api.deps import AppCtx, DbSession
from api.finance_queries import payouts_view, reconciliation_report
from api.routes.finance_attention import get_refunds_attention
from core.errors import InvalidInput
from core.money import format_amount
from core.users import Role
from ledger.report_summary import summary, totals
from ledger.reports import (
    MAX_PAGE,
    TransactionFilter,
    decode_cursor,
    encode_cursor,
    iter_transactions,
    list_transactions,
    trial_balance,
)

log = logging.getLogger(__name__)


class CsvStream(Stream):
    """A Stream whose own media type wins (Litestar 2 prefers the handler's for a Stream)."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


MAX_BIGINT = 2**63 - 1
CSV = "text/csv"

# Query strings are parsed here, not by Litestar, so that every bad value is a
# 422 naming its parameter with one message style.
Q = Annotated[str | None, QueryParameter(max_length=fv.MAX_PARAM)]
From = Annotated[str | None, QueryParameter(name="from")]  # length checked in parse_time
To = Annotated[str | None, QueryParameter(name="to")]
Accept = Annotated[str | None, HeaderParameter(name="accept")]
Fmt = Annotated[str | None, QueryParameter(max_length=8)]


def _int(value: str | None, field: str, *, lo: int, hi: int, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if len(value) > 20 or not value.lstrip("-").isdigit():
        raise InvalidInput("must be an integer", field=field)
    n = int(value)
    if not lo <= n <= hi:
        raise InvalidInput(f"must be between {lo} and {hi}", field=field)
    return n


def _csv_response(body: bytes, name: str) -> Response[bytes]:
    headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
    return Response(body, media_type=CSV, headers=headers)


@get("/summary")
async def get_summary(
    db: DbSession,
    start: From = None,
    end: To = None,
    currency: Q = None,
    group: Annotated[str, QueryParameter(max_length=fv.MAX_PARAM)] = "none",
    accept: Accept = None,
    format: Fmt = None,
) -> Any:
    """Gross volume, fees, revenue, refunds, disputes, payouts, coach balances; by period."""
    s, e = fv.parse_period(start, end)
    cur = fv.parse_currency(currency)
    as_csv = fv.wants_csv(accept, format)
    rows = await summary(db, start=s, end=e, currency=cur, group=group)
    grouped = group != "none"
    out: dict[str, Any] = {
        "from": s.isoformat() if s else None,
        "to": e.isoformat() if e else None,
        "currency": cur,
        "group": group,
        "totals": [fv.summary_json(r) for r in (totals(rows) if grouped else rows)],
        "periods": [fv.summary_json(r) for r in rows] if grouped else [],
    }
    if as_csv:
        data = out["periods"] if grouped else out["totals"]
        columns = ["currency", "period_start", "payments", *fv.SUMMARY_AMOUNTS]
        return _csv_response(fv.csv_of(data, columns), "summary")
    return out


def _filter(
    type: str | None, coach_id: str | None, currency: str | None, start: str | None, end: str | None
) -> TransactionFilter:
    s, e = fv.parse_period(start, end)
    coach = _int(coach_id, "coach_id", lo=1, hi=MAX_BIGINT, default=None)
    return TransactionFilter(
        type=fv.parse_type(type),
        coach_id=coach,
        currency=fv.parse_currency(currency),
        start=s,
        end=e,
    )


async def _snapshot_rows(ctx: AppContext, filters: TransactionFilter) -> AsyncIterator[list[Any]]:
    # Its own session: the request's is closed once the handler returns, and a
    # stream outlives it. One snapshot, so pages never see a half-posted change.
    try:
        async with ctx.factory() as session, session.begin():
            await session.execute(
                text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            )
            async for row in iter_transactions(session, filters):
                yield [getattr(row, c) for c in fv.TX_COLUMNS]
    except Exception:
        # The status line is sent already: all that is left is to log and cut the body short.
        log.exception("CSV export of transactions failed")
        raise


@get("/transactions")
async def get_transactions(
    db: DbSession,
    ctx: AppCtx,
    type: Q = None,
    coach_id: Q = None,
    currency: Q = None,
    start: From = None,
    end: To = None,
    limit: Q = None,
    cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    accept: Accept = None,
    format: Fmt = None,
) -> Any:
    """The Transaction view, oldest first, paginated by ``cursor``; CSV streams the whole range."""
    filters = _filter(type, coach_id, currency, start, end)
    size = _int(limit, "limit", lo=1, hi=MAX_PAGE, default=100)
    after = decode_cursor(cursor) if cursor else None
    if fv.wants_csv(accept, format):
        headers = {"Content-Disposition": 'attachment; filename="transactions.csv"'}
        body = fv.csv_stream(fv.TX_COLUMNS, _snapshot_rows(ctx, filters))
        return CsvStream(body, media_type=CSV, headers=headers)
    assert size is not None
    page = await list_transactions(db, filters, after=after, limit=size)
    full = len({r.id for r in page}) == size
    last = page[-1] if page else None
    return {
        "data": [fv.transaction_json(r) for r in page],
        "next_cursor": encode_cursor(last.occurred_at, last.id) if full and last else None,
    }


@get("/payouts")
async def get_payouts(
    db: DbSession,
    state_: Annotated[str | None, QueryParameter(name="state")] = None,
    coach_id: Q = None,
    limit: Q = None,
    cursor: Q = None,
    accept: Accept = None,
    format: Fmt = None,
) -> Any:
    """Payouts newest first: state, coach, transfer, and the earnings each paid."""
    rows = await payouts_view(
        db,
        state=state_,
        coach_id=_int(coach_id, "coach_id", lo=1, hi=MAX_BIGINT, default=None),
        limit=_int(limit, "limit", lo=1, hi=MAX_PAGE, default=100) or 100,
        before=_int(cursor, "cursor", lo=1, hi=MAX_BIGINT, default=None),
    )
    if fv.wants_csv(accept, format):
        columns = ["id", "coach_id", "currency", "amount", "state", "transfer", "created_at",
                   "settled_at", "failed_at", "failure_reason", "earning_ids"]  # fmt: skip
        flat = [{**r, "earning_ids": " ".join(str(e["id"]) for e in r["earnings"])} for r in rows]
        return _csv_response(fv.csv_of(flat, columns), "payouts")
    return {"data": rows, "next_cursor": str(rows[-1]["id"]) if rows else None}


@get("/trial-balance")
async def get_trial_balance(
    db: DbSession,
    currency: Q = None,
    verify: Annotated[bool, QueryParameter()] = False,
    accept: Accept = None,
    format: Fmt = None,
) -> Any:
    """Every account's balance (debit positive); the sum per currency is zero."""
    tb = await trial_balance(db, currency=fv.parse_currency(currency), verify=verify)
    lines = [fv.trial_line_json(line) for line in tb.lines]
    if fv.wants_csv(accept, format):
        columns = ["account_id", "account", "owner_type", "owner_id", "kind", "currency",
                   "debit", "credit", "balance", "entries_sum"]  # fmt: skip
        return _csv_response(fv.csv_of(lines, columns), "trial-balance")
    return {
        "balanced": tb.balanced,
        "totals": {c: {"sum": v, "sum_display": format_amount(v, c)} for c, v in tb.totals.items()},
        "accounts": lines,
    }


@get("/reconciliation")
async def get_reconciliation(
    db: DbSession,
    ctx: AppCtx,
    start: From = None,
    end: To = None,
    accept: Accept = None,
    format: Fmt = None,
) -> Any:
    """The ledger against Stripe's balance transactions: matched, missing, differences."""
    s, e = fv.parse_period(start, end)
    as_csv = fv.wants_csv(accept, format)
    out = await reconciliation_report(db, ctx, s, e)
    if as_csv:
        return _csv_response(fv.reconciliation_csv(out), "reconciliation")
    return out


router = Router(
    path="/v1/finance",
    guards=[require_role(Role.FINANCE, Role.ADMIN)],
    route_handlers=[
        get_summary,
        get_transactions,
        get_payouts,
        get_trial_balance,
        get_reconciliation,
        get_refunds_attention,
    ],
    tags=["finance"],
)
