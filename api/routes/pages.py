"""Server-rendered pages: sign-in, the finance dashboard, the coach page.

Same auth as the API (the session cookie set by ``POST /auth/session``, or a
bearer token); a page asked for without one redirects to the sign-in form.
Templates are Jinja (Litestar's engine, autoescaped), charts inline SVG.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import MediaType, Request, Response, Router, get
from litestar.params import QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api import finance_queries as fq
from api import finance_views as fv
from api.auth import AuthenticationFailed, Claims, claims_of
from api.charts import bar_chart, hbar_chart
from api.deps import AppCtx, DbSession
from core.errors import DomainError, InvalidInput
from core.money import format_amount
from core.users import User, provision_user
from ledger.report_summary import summary, totals
from ledger.reports import TransactionFilter, list_transactions, trial_balance
from sessions.attention import refunds_needing_attention

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_engine = JinjaTemplateEngine(directory=TEMPLATES)
Q = Annotated[str | None, QueryParameter()]
From = Annotated[str | None, QueryParameter(name="from")]
To = Annotated[str | None, QueryParameter(name="to")]
RECONCILE_DEFAULT = timedelta(days=30)
ATTENTION_ROWS = 20  # the rest through GET /v1/finance/refunds/attention
TOTAL_COLUMNS = (
    ("gross_volume", "Gross volume"), ("platform_fees", "Platform fees"),
    ("processing_fees", "Stripe fees"), ("net_platform_revenue", "Net revenue"),
    ("refunds", "Refunds"), ("disputes", "Disputes"), ("payouts_made", "Payouts made"),
    ("payouts_pending", "Payouts pending"), ("coach_balances_outstanding", "Owed to coaches"),
)  # fmt: skip


def render(name: str, code: int = 200, **context: Any) -> Response[str]:
    html = _engine.get_template(name).render(status=code, **context)
    return Response(html, media_type=MediaType.HTML, status_code=code)


def _viewer(request: Request[Any, Any, Any], ctx: AppCtx) -> Claims | None:
    try:
        return claims_of(request, ctx.tokens)
    except AuthenticationFailed:
        return None


def _to_signin(request: Request[Any, Any, Any]) -> Redirect:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/?next={quote(target, safe='')}", status_code=303)


def _forbidden(viewer: Claims, message: str) -> Response[str]:
    return render("error.html", 403, viewer=viewer, heading="Not allowed", message=message)


def _date_value(v: datetime | None) -> str:
    return v.date().isoformat() if v else ""


async def _currencies(db: AsyncSession) -> list[str]:
    rows = await db.execute(text("SELECT DISTINCT currency FROM ledger_accounts ORDER BY 1"))
    return [r[0] for r in rows]


@get("/", include_in_schema=False)
async def index(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    next: Annotated[str | None, QueryParameter()] = None,
) -> Response[str]:
    viewer = _viewer(request, ctx)
    safe = next if next and next.startswith("/") and not next.startswith("//") else "/"
    return render("signin.html", viewer=viewer, next_url=safe)


@get("/finance", include_in_schema=False)
async def finance_page(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    db: DbSession,
    start: From = None,
    end: To = None,
    currency: Q = None,
    group: Q = None,
) -> Response[Any]:
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_signin(request)
    if viewer.role not in ("finance", "admin"):
        return _forbidden(viewer, "The finance dashboard is for finance staff and admins.")
    error = None
    try:
        s, e = fv.parse_period(start, end)
        cur = fv.parse_currency(currency)
        grp = group if group in ("day", "week", "month") else "day"
    except InvalidInput as exc:
        error, s, e, cur, grp = f"{exc.field}: {exc.detail}", None, None, None, "day"
    rows = await summary(db, start=s, end=e, currency=cur, group=grp)
    currencies = await _currencies(db)
    seen = {r.currency for r in rows}
    default = ctx.settings.default_currency
    chart_cur = cur or (default if default in seen or not rows else rows[0].currency)
    mine = [r for r in rows if r.currency == chart_cur]
    labels = [r.period_start.isoformat() if r.period_start else "" for r in mine]
    revenue = bar_chart(
        labels,
        [("Platform fees", [r.platform_fees for r in mine]),
         ("Stripe fees", [r.processing_fees for r in mine]),
         ("Net revenue", [r.net_platform_revenue for r in mine])],
        chart_cur,
    )  # fmt: skip
    volume = bar_chart(
        labels,
        [("Gross volume", [r.gross_volume for r in mine]),
         ("Refunds", [r.refunds for r in mine]),
         ("Disputes", [r.disputes for r in mine])],
        chart_cur,
    )  # fmt: skip
    states = await fq.payouts_by_state(db, start=s, end=e, currency=cur)
    payouts_chart = hbar_chart(
        [(f"{p['state']} {p['currency'].upper()}", p["count"], f"{p['count']} · {p['display']}")
         for p in states]
    )  # fmt: skip
    recon: dict[str, Any] | None = None
    recon_error = None
    try:
        # Without a period, the last 30 days: a page view must not page through all of
        # Stripe's history (the API endpoint and its CSV do any period asked for).
        recon_start = s if (s or e) else ctx.clock.now() - RECONCILE_DEFAULT
        recon = await fq.reconciliation_report(db, ctx, recon_start, e)
    except (
        DomainError
    ) as exc:  # Stripe unreachable or the period too large: say so, render the rest
        recon_error = exc.detail
    recon_chart = hbar_chart(
        [(k.replace("_", " "), n, str(n)) for k, n in (recon or {}).get("counts", {}).items()]
    )
    tx_filter = TransactionFilter(currency=cur, start=s, end=e)
    transactions = [
        fv.transaction_json(t) for t in await list_transactions(db, tx_filter, limit=25)
    ]
    balanced = (await trial_balance(db)).balanced
    attention = [
        {**asdict(i), "amount_display": format_amount(i.amount, i.currency)}
        for i in await refunds_needing_attention(db, limit=ATTENTION_ROWS)
    ]
    period = {"from": _date_value(s), "to": _date_value(e), "currency": cur or "", "group": grp}
    tx_params = {"from": s.isoformat() if s else "", "to": e.isoformat() if e else ""}
    qs_tx = urlencode({k: v for k, v in {**tx_params, "currency": cur or ""}.items() if v})
    return render(
        "finance.html",
        viewer=viewer,
        error=error,
        f=period,
        currencies=currencies,
        columns=TOTAL_COLUMNS,
        totals=[fv.summary_json(t) for t in totals(rows)],
        chart_currency=chart_cur,
        revenue_chart=revenue,
        volume_chart=volume,
        payouts_chart=payouts_chart,
        payout_states=states,
        recon=recon,
        recon_error=recon_error,
        recon_chart=recon_chart,
        transactions=transactions,
        trial_balanced=balanced,
        attention=attention,
        attention_rows=ATTENTION_ROWS,
        qs=urlencode({**{k: v for k, v in period.items() if k != "group" and v}, "group": grp}),
        qs_tx=qs_tx,
    )


async def _coach_id(
    db: AsyncSession, viewer: Claims, ctx: AppCtx, asked: str | None
) -> int | Response[str] | None:
    """A coach sees their own page; finance and admin any coach's (``coach_id``)."""
    if viewer.role == "coach":
        user = await provision_user(db, sub=viewer.sub, role=viewer.role, now=ctx.clock.now())
        return user.id
    if viewer.role not in ("finance", "admin"):
        return _forbidden(viewer, "The coach page is for coaches (and finance staff).")
    if not asked:
        return None
    if not asked.isdigit() or not 1 <= int(asked) < 2**63:
        raise InvalidInput("must be a positive integer", field="coach_id")
    return int(asked)


@get("/coach", include_in_schema=False)
async def coach_page(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    db: DbSession,
    coach_id: Q = None,
    currency: Q = None,
    start: From = None,
    end: To = None,
) -> Response[Any]:
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_signin(request)
    error = None
    try:
        who = await _coach_id(db, viewer, ctx, coach_id)
        s, e = fv.parse_period(start, end)
        cur = fv.parse_currency(currency)
    except InvalidInput as exc:
        return render("error.html", 422, viewer=viewer, heading="Invalid filter",
                      message=f"{exc.field}: {exc.detail}")  # fmt: skip
    if isinstance(who, Response):
        return who
    if who is None:
        found = (await db.execute(text("SELECT min(owner_id) FROM ledger_accounts "
                                       "WHERE owner_type = 'coach'"))).scalar()  # fmt: skip
        if found is None:
            return render("error.html", 404, viewer=viewer, heading="No coaches yet",
                          message="No coach has any money in the ledger yet.")  # fmt: skip
        who = int(found)
    page = await fq.coach_page(db, who, currency=cur, start=s, end=e)
    paid = await fq.paid_out(db, who)
    names = await db.execute(select(User.sub, User.display_name).where(User.id == who))
    name_row = names.one_or_none()
    coach_name = (name_row[1] or name_row[0]) if name_row else f"coach {who}"
    shown = sorted(set(page.balances) | set(page.earned) | ({cur} if cur else set()))
    balances = [
        {"currency": c, **{k: format_amount(page.balances.get(c, {}).get(k, 0), c)
                           for k in ("pending", "available", "in_transit")},
         "paid": format_amount(paid.get(c, 0), c),
         "earned": format_amount(sum(page.earned.get(c, {}).values()), c)}
        for c in shown
    ]  # fmt: skip
    chart_cur = cur or (shown[0] if shown else ctx.settings.default_currency)
    days = sorted(page.earned.get(chart_cur, {}).items())
    chart = bar_chart([d[5:] for d, _ in days], [("Your share", [v for _, v in days])], chart_cur)
    return render(
        "coach.html",
        viewer=viewer,
        error=error,
        page=page,
        coach_name=coach_name,
        balances=balances,
        pick_coach=viewer.role != "coach",
        currencies=await _currencies(db),
        f={"from": _date_value(s), "to": _date_value(e), "currency": cur or ""},
        chart_currency=chart_cur,
        earnings_chart=chart,
    )


router = Router(path="/", route_handlers=[index, finance_page, coach_page])
