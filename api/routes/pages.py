"""Server-rendered pages: sign-in, the finance dashboard, the coach page, the mentee's
sessions and bookings, a booking's page; and the static files they load.

A page asked for without a sign-in redirects to the sign-in form; with the wrong role it
is a 403 page, for what does not exist (or is not the viewer's) a 404 page. See
api/routes/pages_base.py for what they share.
"""

from __future__ import annotations

from typing import Annotated, Any

import swagger_ui_bundle
from litestar import Request, Response, Router, get
from litestar.params import QueryParameter
from litestar.static_files import create_static_files_router
from litestar.utils.scope.state import ScopeState

from api.auth import AuthenticationFailed
from api.deps import AppCtx
from api.errors import EXCEPTION_HANDLERS
from api.routes.pages_admin import admin_page
from api.routes.pages_base import STATIC, render, viewer_of
from api.routes.pages_coach import coach_page
from api.routes.pages_finance import finance_page
from api.routes.pages_mentee import booking_page, bookings_page, sessions_page
from core.errors import DomainError

SWAGGER_PATH = "/static/swagger-ui"


def _safe_next(target: object) -> str:
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target if "\\" not in target else "/"
    return "/"


@get("/", include_in_schema=False)
async def index(
    request: Request[Any, Any, Any],
    ctx: AppCtx,
    next: Annotated[str | None, QueryParameter()] = None,
) -> Response[str]:
    return render("signin.html", viewer=await viewer_of(request, ctx), next_url=_safe_next(next))


def sign_in_failed(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """``POST /auth/session`` refused a token: a form gets the form again with the reason
    (not the API's JSON), a JSON client the usual ``{"error", "detail"}``."""
    content_type = request.headers.get("content-type", "")
    if not isinstance(exc, AuthenticationFailed) or not content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        return EXCEPTION_HANDLERS[DomainError](request, exc)
    # The handler read the form already; exception handlers cannot await it again.
    form = ScopeState.from_scope(request.scope).form
    sent = form.get("next") if isinstance(form, dict) else None
    return render(
        "signin.html", 401, viewer=None, next_url=_safe_next(sent), signin_error=exc.detail
    )


static_files = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False, name="static"
)
swagger_files = create_static_files_router(
    path=SWAGGER_PATH,
    directories=[swagger_ui_bundle.swagger_ui_path],
    include_in_schema=False,
    name="swagger-ui",
)
router = Router(
    path="/",
    route_handlers=[
        index,
        finance_page,
        admin_page,
        coach_page,
        sessions_page,
        bookings_page,
        booking_page,
        swagger_files,
        static_files,
    ],
)
