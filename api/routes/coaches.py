"""Coach onboarding on Stripe Connect and the coach's view of their account.

``POST /v1/coaches/me/onboarding`` and ``GET /v1/coaches/me/account`` need a
coach's token. The refresh and return routes are where Stripe sends the
coach's *browser* back, without our bearer token: they are authorised by the
signed ``token`` in the URL we gave Stripe (connect/links.py).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import MediaType, Request, Response, Router, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect

from api.deps import AppContext, AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from api.routes.pages_base import render, viewer_of
from api.routes.pages_coach import STATUS_TEXT
from connect import service
from core.stripe_gateway import StripeGateway
from core.users import Role, provision_user

MAX_BODY_BYTES = 4 * 1024
MAX_TOKEN_LENGTH = 200
LinkToken = Annotated[str | None, QueryParameter(name="token", max_length=MAX_TOKEN_LENGTH)]


class OnboardingRequest(msgspec.Struct, forbid_unknown_fields=True):
    # ISO 3166-1 alpha-2, as Stripe wants it; the account's country is fixed at creation.
    country: Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")] = service.DEFAULT_COUNTRY


class OnboardingOut(msgspec.Struct):
    url: str
    expires_at: int
    stripe_account_id: str
    status: str
    account_created: bool


class AccountOut(msgspec.Struct):
    coach_id: int
    status: str
    stripe_account_id: str | None
    country: str | None
    default_currency: str | None
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    transfers_capability: str | None
    requirements_currently_due: list[str]
    requirements_past_due: list[str]
    requirements_eventually_due: list[str]
    disabled_reason: str | None
    dashboard_url: str | None


def account_out(view: service.AccountView) -> AccountOut:
    return AccountOut(
        coach_id=view.coach_id,
        status=view.status,
        stripe_account_id=view.stripe_account_id,
        country=view.country,
        default_currency=view.default_currency,
        charges_enabled=view.charges_enabled,
        payouts_enabled=view.payouts_enabled,
        details_submitted=view.details_submitted,
        transfers_capability=view.transfers_capability,
        requirements_currently_due=list(view.requirements_currently_due),
        requirements_past_due=list(view.requirements_past_due),
        requirements_eventually_due=list(view.requirements_eventually_due),
        disabled_reason=view.disabled_reason,
        dashboard_url=view.dashboard_url,
    )


def _onboarding_out(link: service.OnboardingLink) -> OnboardingOut:
    return OnboardingOut(
        url=link.url,
        expires_at=link.expires_at,
        stripe_account_id=link.stripe_account_id,
        status=link.status,
        account_created=link.account_created,
    )


async def _onboarding_request(request: Request[Any, Any, Any]) -> OnboardingRequest:
    """The body is optional (``{}`` or nothing means the default country)."""
    return await read_json(request, OnboardingRequest)


@post(
    "/coaches/me/onboarding",
    status_code=200,
    guards=[require_role(Role.COACH)],
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: OnboardingRequest},
)
async def start_onboarding(
    request: Request[Any, Any, Any], db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> OnboardingOut:
    """Create the coach's Connect account (once) and answer a fresh onboarding link."""
    data = await _onboarding_request(request)
    now = ctx.clock.now()
    if await service.note_account_request(db, coach_id=current_user.id, now=now):
        # Committed before Stripe is called: see note_account_request.
        await db.commit()
    link = await service.start_onboarding(
        db,
        coach_id=current_user.id,
        gateway=gateway_under_lock(ctx),
        settings=ctx.settings,
        now=now,
        country=data.country,
    )
    return _onboarding_out(link)


def gateway_under_lock(ctx: AppContext) -> StripeGateway:
    """The short-timeout, no-retry gateway: onboarding holds the coach's profile row
    lock across its Stripe calls (one account per coach), so a slow Stripe must fail
    fast (503, the retry replays the same idempotency key) rather than hold the lock."""
    return ctx.probe_gateway or ctx.gateway


@get("/coaches/me/onboarding/refresh", status_code=303)
async def refresh_onboarding(db: DbSession, ctx: AppCtx, token: LinkToken = None) -> Redirect:
    """Stripe's ``refresh_url``: the old link expired or was used; send the browser to a new one."""
    link = await service.refresh_onboarding(
        db, token=token, gateway=gateway_under_lock(ctx), settings=ctx.settings, now=ctx.clock.now()
    )
    return Redirect(link.url, status_code=303)


@get("/coaches/me/onboarding/return", status_code=200)
async def onboarding_return(
    request: Request[Any, Any, Any], db: DbSession, ctx: AppCtx, token: LinkToken = None
) -> Response[Any]:
    """Stripe's ``return_url``: re-read the account and show its status (JSON when the
    client asks for it). A browser signed in as this coach goes on to the coach page;
    one without the session (another device) gets the status on a page of its own."""
    view = await service.complete_return(
        db, token=token, gateway=gateway_under_lock(ctx), settings=ctx.settings, now=ctx.clock.now()
    )
    if "application/json" in request.headers.get("accept", ""):
        return Response(account_out(view), media_type=MediaType.JSON)
    viewer = await viewer_of(request, ctx)
    if viewer is not None and viewer.role == Role.COACH:
        user = await provision_user(
            db, issuer=viewer.issuer, sub=viewer.sub, role=viewer.role, now=ctx.clock.now()
        )
        if user.id == view.coach_id:
            return Redirect("/coach?onboarding=return", status_code=303)
    return render(
        "onboarding_return.html",
        viewer=viewer,
        account=view,
        status_text=STATUS_TEXT.get(view.status, ""),
        refresh_href=f"{service.REFRESH_PATH}?{urlencode({'token': token or ''})}",
    )


@get("/coaches/me/account", guards=[require_role(Role.COACH)])
async def my_account(db: DbSession, current_user: AuthUser, ctx: AppCtx) -> AccountOut:
    """Status, what Stripe still needs, and an Express dashboard link once active."""
    view = await service.get_account_view(db, coach_id=current_user.id, gateway=ctx.gateway)
    return account_out(view)


router = Router(
    path="/v1",
    route_handlers=[start_onboarding, refresh_onboarding, onboarding_return, my_account],
)
