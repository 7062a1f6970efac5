"""The session cookie for the web pages: sign in with a token, sign out."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.response import Redirect

from api.auth import SESSION_COOKIE, AuthenticationFailed
from api.context import AppContext
from api.deps import AppCtx
from api.openapi_errors import REQUEST_BODY
from api.routes.pages import sign_in_failed

MAX_TOKEN_LENGTH = 4096


class SessionRequest(msgspec.Struct):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    next: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class SessionInfo(msgspec.Struct):
    sub: str
    role: str


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a link sign people
    # in and send them elsewhere.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _cookie(ctx: AppContext, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=ctx.settings.public_url.startswith("https://"),
    )


async def _session_request(request: Request[Any, Any, Any]) -> tuple[SessionRequest, bool]:
    content_type = request.headers.get("content-type", "")
    is_form = content_type.startswith(
        (RequestEncodingType.URL_ENCODED.value, RequestEncodingType.MULTI_PART.value)
    )
    try:
        if is_form:
            return msgspec.convert(dict(await request.form()), SessionRequest), True
        return msgspec.json.decode(await request.body(), type=SessionRequest), False
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise AuthenticationFailed(f"token missing or invalid: {exc}") from None


@post(
    "/session",
    status_code=200,
    request_max_body_size=16 * 1024,
    opt={REQUEST_BODY: SessionRequest},  # or the same fields as a form
    exception_handlers={AuthenticationFailed: sign_in_failed},  # a form gets the form back
)
async def sign_in(request: Request[Any, Any, Any], ctx: AppCtx) -> Response[Any]:
    """Validate a token (form field or JSON ``{"token"}``) and keep it in an HttpOnly cookie."""
    data, is_form = await _session_request(request)
    claims = ctx.tokens.verify(data.token)
    cookie = _cookie(ctx, data.token, ctx.settings.jwt_ttl_minutes * 60)
    if is_form:
        return Redirect(_safe_next(data.next), status_code=303, cookies=[cookie])
    return Response(SessionInfo(sub=claims.sub, role=claims.role), cookies=[cookie])


@post("/logout", status_code=200)
async def sign_out(request: Request[Any, Any, Any], ctx: AppCtx) -> Response[Any]:
    cookie = _cookie(ctx, "", 0)
    if request.headers.get("content-type", "").startswith(RequestEncodingType.URL_ENCODED.value):
        return Redirect("/", status_code=303, cookies=[cookie])
    return Response({"signed_out": True}, cookies=[cookie])


router = Router(path="/auth", route_handlers=[sign_in, sign_out])
