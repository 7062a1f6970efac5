"""The finance dashboard: totals per currency, charts per currency, payouts by state,
reconciliation with Stripe, refunds needing a person, transactions newest first."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.params import QueryParameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api import finance_queries as fq
from api import finance_views as fv
from api.charts import bar_chart, hbar_chart
from api.deps import AppCtx, DbSession
from api.routes.pages_admin import webhook_health
from api.routes.pages_base import PageResponse, forbidden, render, to_signin, viewer_of
from core.errors import DomainError, InvalidInput
from ledger.report_summary import SummaryRow, summary, totals
from ledger.reports import TransactionFilter, decode_cursor, encode_cursor, trial_balance
from sessions.attention import refunds_needing_attention

Q = Annotated[str | None, QueryParameter()]
From = Annotated[str | None, QueryParameter(name="from")]
To = Annotated[str | None, QueryParameter(name="to")]
Cursor = Annotated[str | None, QueryParameter(name="before", max_length=200)]
RECONCILE_DEFAULT = timedelta(days=30)
ATTENTION_ROWS = 20  # the rest through GET /v1/finance/refunds/attention
TRANSACTION_ROWS = 25
TOTAL_COLUMNS = (
    ("gross_volume", "Gross volume"), ("platform_fees", "Platform fees"),
    ("processing_fees", "Stripe fees"), ("net_platform_revenue", "Net revenue"),
    ("refunds", "Refunds"), ("disputes", "Disputes"), ("payouts_made", "Payouts made"),
    ("payouts_pending", "Payouts pending"), ("coach_balances_outstanding", "Owed to coaches"),
)  # fmt: skip


def _date_value(v: datetime | None) -> str:
    return v.date().isoformat() if v else ""


async def _currencies(db: AsyncSession) -> list[str]:
    rows = await db.execute(text("SELECT DISTINCT currency FROM ledger_accounts ORDER BY 1"))
    return [r[0] for r in rows]


def _charts(rows: list[SummaryRow]) -> list[dict[str, Any]]:
    """Per currency the two charts over its periods: one currency's amounts per axis."""
    out = []
    for cur in sorted({r.currency for r in rows}):
        mine = [r for r in rows if r.currency == cur]
        labels = [r.period_start.isoformat() if r.period_start else "" for r in mine]
        out.append({
            "currency": cur,
            "revenue": bar_chart(labels, [
                ("Platform fees", [r.platform_fees for r in mine]),
                ("Stripe fees", [r.processing_fees for r in mine]),
                ("Net revenue", [r.net_platform_revenue for r in mine])], cur),
            "volume": bar_chart(labels, [
                ("Gross volume", [r.gross_volume for r in mine]),
                ("Refunds", [r.refunds for r in mine]),
                ("Disputes", [r.disputes for r in mine])], cur),
        })  # fmt: skip
    return out


@get("/finance", include_in_schema=False)
async def finance_page(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    db: DbSession,
    start: From = None,
    end: To = None,
    currency: Q = None,
    group: Q = None,
    before: Cursor = None,
) -> PageResponse:
    viewer = await viewer_of(request, ctx)
    if viewer is None:
        return to_signin(request)
    if viewer.role not in ("finance", "admin"):
        return forbidden(viewer, "The finance dashboard is for finance staff and admins.")
    error = None
    try:
        s, e = fv.parse_period(start, end)
        cur = fv.parse_currency(currency)
        grp = group if group in ("day", "week", "month") else "day"
        older_than = decode_cursor(before) if before else None
    except InvalidInput as exc:
        error, s, e, cur, grp, older_than = (
            f"{exc.field}: {exc.detail}",
            None,
            None,
            None,
            "day",
            None,
        )
    rows = await summary(db, start=s, end=e, currency=cur, group=grp)
    states = await fq.payouts_by_state(db, start=s, end=e, currency=cur)
    payouts_chart = hbar_chart(
        [(f"{p['state']} {p['currency'].upper()}", p["count"],
          f"{p['count']:,} · {fv.display_amount(p['amount'], p['currency'])}")
         for p in states]
    )  # fmt: skip
    recon: dict[str, Any] | None = None
    recon_error = None
    try:
        # Without a period, the last 30 days: a page view must not page through all of
        # Stripe's history (the API endpoint and its CSV do any period asked for).
        recon_start = s if (s or e) else ctx.clock.now() - RECONCILE_DEFAULT
        recon = await fq.reconciliation_report(db, ctx, recon_start, e)
    except DomainError as exc:  # Stripe unreachable or the period too large: say so
        recon_error = exc.detail
    recon_chart = hbar_chart(
        [(k.replace("_", " "), n, f"{n:,}") for k, n in (recon or {}).get("counts", {}).items()]
    )
    tx_filter = TransactionFilter(currency=cur, start=s, end=e)
    page, next_at = await fq.transactions_newest_first(
        db, tx_filter, before=older_than, limit=TRANSACTION_ROWS
    )
    attention = [asdict(i) for i in await refunds_needing_attention(db, limit=ATTENTION_ROWS)]
    period = {"from": _date_value(s), "to": _date_value(e), "currency": cur or "", "group": grp}
    tx_params = {"from": s.isoformat() if s else "", "to": e.isoformat() if e else ""}
    qs_tx = urlencode({k: v for k, v in {**tx_params, "currency": cur or ""}.items() if v})
    keep = {k: v for k, v in {**period}.items() if v}
    return render(
        "finance.html",
        viewer=viewer,
        error=error,
        f=period,
        currencies=await _currencies(db),
        columns=TOTAL_COLUMNS,
        totals=totals(rows),
        charts=_charts(rows),
        payouts_chart=payouts_chart,
        payout_states=states,
        recon=recon,
        recon_error=recon_error,
        recon_chart=recon_chart,
        transactions=page,
        older_url=(
            "/finance?" + urlencode({**keep, "before": encode_cursor(*next_at)})
            if next_at
            else None
        ),
        newest_url=("/finance?" + urlencode(keep)) if older_than else None,
        trial_balanced=(await trial_balance(db)).balanced,
        attention=attention,
        attention_rows=ATTENTION_ROWS,
        webhooks=await webhook_health(db, ctx),
        qs=urlencode({**{k: v for k, v in period.items() if k != "group" and v}, "group": grp}),
        qs_tx=qs_tx,
    )
