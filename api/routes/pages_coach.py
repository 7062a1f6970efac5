"""The coach page: Stripe onboarding, money (balances as ``GET /v1/coaches/me/balance``
gives them, earnings net of refunds and disputes), sessions and who booked them.

A coach sees their own page (``coach_id`` is ignored); finance and admin pick any coach.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import QueryParameter
from sqlalchemy import select

from api import coach_queries as cq
from api import finance_queries as fq
from api import finance_views as fv
from api.charts import bar_chart
from api.deps import AppCtx, DbSession
from api.routes.pages_base import (
    PageResponse,
    forbidden,
    invalid,
    not_found,
    parse_id,
    render,
    to_signin,
    viewer_of,
)
from connect.service import get_account_view
from core.db import driver_fetch
from core.errors import InvalidInput
from core.money import CURRENCIES
from core.users import provision_user
from ledger.models import Earning
from payouts.views import coach_balance, payout_state

Q = Annotated[str | None, QueryParameter()]
From = Annotated[str | None, QueryParameter(name="from")]
To = Annotated[str | None, QueryParameter(name="to")]
EARNING_ROWS = 50
STATUS_TEXT = {
    "not_started": "You have not connected a Stripe account yet: mentees cannot pay you "
    "until you do.",
    "onboarding": "Stripe still needs some details from you before you can take payments.",
    "pending_verification": "Stripe is verifying your details.",
    "restricted": "Stripe needs more information before it pays you out.",
    "active": "Your Stripe account is ready: you can publish sessions and get paid.",
    "disabled": "Stripe has disabled this account. Please contact support.",
}
STATUS_BADGE = {"active": "ok", "restricted": "bad", "disabled": "bad", "onboarding": "warn",
                "pending_verification": "info", "not_started": "warn"}  # fmt: skip


def _date_value(v: datetime | None) -> str:
    return v.date().isoformat() if v else ""


async def _earnings(db: DbSession, coach_id: int, currency: str | None) -> list[dict[str, Any]]:
    q = select(Earning).where(Earning.coach_id == coach_id)
    if currency:
        q = q.where(Earning.currency == currency)
    rows = (await db.execute(q.order_by(Earning.id.desc()).limit(EARNING_ROWS))).scalars().all()
    nets = await cq.net_shares(db, coach_id, [e.booking_id for e in rows if e.booking_id])
    out = []
    for e in rows:
        net = nets.get(e.booking_id, e.amount) if e.booking_id else e.amount
        out.append(
            {"id": e.id, "booking_id": e.booking_id, "currency": e.currency, "gross": e.gross,
             "platform_fee": e.platform_fee, "share": e.amount, "taken_back": e.amount - net,
             "net": net, "status": e.status, "available_at": e.available_at}
        )  # fmt: skip
    return out


@get("/coach", include_in_schema=False)
async def coach_page(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    db: DbSession,
    coach_id: Q = None,
    currency: Q = None,
    start: From = None,
    end: To = None,
    onboarding: Q = None,
) -> PageResponse:
    viewer = await viewer_of(request, ctx)
    if viewer is None:
        return to_signin(request)
    if viewer.role not in ("coach", "finance", "admin"):
        return forbidden(viewer, "The coach page is for coaches (and finance staff).")
    try:
        s, e = fv.parse_period(start, end)
        cur = fv.parse_currency(currency)
    except InvalidInput as exc:
        return invalid(viewer, f"{exc.field}: {exc.detail}")
    own = viewer.role == "coach"
    if own:
        user = await provision_user(
            db, issuer=viewer.issuer, sub=viewer.sub, role=viewer.role, now=ctx.clock.now()
        )
        who = user.id
    elif coach_id in (None, ""):
        return render("coach_list.html", viewer=viewer, coaches=await cq.coach_list(db))
    else:
        asked = parse_id(coach_id)
        if asked is None:
            return invalid(viewer, "coach_id: must be a positive integer")
        who = asked
    name = await cq.coach_name(db, who)
    if name is None:
        if not own:
            return not_found(viewer, f"There is no coach with id {who}.")
        name = viewer.sub
    # No Stripe call here: the dashboard link is asked for when the coach clicks.
    account = await get_account_view(db, coach_id=who, gateway=None)
    every = await coach_balance(db, who)
    payout = await payout_state(driver_fetch(db), who, now=ctx.clock.now())
    balances = [b for b in every if not cur or b.currency == cur]
    earned = await cq.earned_by_day(db, who, currency=cur, start=s, end=e)
    currencies = sorted({b.currency for b in balances} | set(earned) | ({cur} if cur else set()))
    charts = [
        {"currency": c,
         "chart": bar_chart([d[5:] for d in sorted(earned.get(c, {}))],
                            [("Net earnings", [earned[c][d] for d in sorted(earned.get(c, {}))])],
                            c)}
        for c in currencies
    ]  # fmt: skip
    due = [b for b in balances if b.next_release_at is not None]
    return render(
        "coach.html",
        viewer=viewer,
        own=own,
        coach_id=who,
        coach_name=name,
        account=account,
        status_text=STATUS_TEXT.get(account.status, ""),
        status_badge=STATUS_BADGE.get(account.status, ""),
        returned=onboarding == "return",
        balances=balances,
        payout_state=payout,
        earned={c: sum(earned.get(c, {}).values()) for c in currencies},
        next_releases=sorted(due, key=lambda b: (b.next_release_at, b.currency)),
        charts=charts,
        earnings=await _earnings(db, who, cur),
        payouts=[
            p
            for p in await fq.payouts_view(db, coach_id=who, limit=50)
            if not cur or p["currency"] == cur
        ],
        sessions=await cq.coach_sessions(db, who, clock=ctx.clock),
        now=ctx.clock.now(),
        coach_currencies=sorted({b.currency for b in every} | ({cur} if cur else set())),
        currencies=sorted(CURRENCIES),
        exponents=CURRENCIES,
        default_currency=account.default_currency or ctx.settings.default_currency,
        refund_window_hours=ctx.settings.refund_window_hours,
        f={"from": _date_value(s), "to": _date_value(e), "currency": cur or ""},
        period=bool(s or e),
    )
