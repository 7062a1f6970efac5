"""What every server-rendered page shares: the template engine, who is looking, and the
answers a page gives instead of the API's JSON errors (sign-in redirect, 403 and 404 pages).

Same auth as the API (the session cookie set by ``POST /auth/session``, or a bearer
token). Templates are Jinja (Litestar's engine, autoescaped); page scripts live in
``api/static`` and call the ``/v1`` JSON API (``static/app.js``: cookie, CSRF header).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect

from api.auth import AuthenticationFailed, Claims, aclaims_of, current_user_of
from api.context import AppContext
from api.finance_views import display_amount

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"
_engine = JinjaTemplateEngine(directory=TEMPLATES)
TEMPLATES_ENGINE = _engine  # the app registers the CSP nonce callable on it
PageResponse = Response[Any]


def _iso_utc(value: datetime | None) -> str:
    """A UTC ISO 8601 instant for ``<time datetime>``; the browser shows it in local time."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else ""


def _utc_text(value: datetime | None) -> str:
    """What a ``<time>`` shows before (or without) the page script: the UTC time."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def _refund_closes(session: Any) -> datetime:
    """When the mentee's refund window of a coaching session closes."""
    closes: datetime = session.starts_at - timedelta(hours=session.refund_window_hours)
    return closes


_env = _engine.engine
_env.globals["refund_closes"] = _refund_closes
_env.filters["money"] = display_amount
_env.filters["iso"] = _iso_utc
_env.filters["utc"] = _utc_text
_env.filters["plural"] = _plural


def render(name: str, code: int = 200, **context: Any) -> Response[str]:
    html = _engine.get_template(name).render(status=code, **context)
    return Response(html, media_type=MediaType.HTML, status_code=code)


async def viewer_of(request: Request[Any, Any, Any], ctx: AppContext) -> Claims | None:
    """The signed-in viewer, or None. Their stored role must be the one claimed
    (api.auth.current_user_of: a known user's role is fixed)."""
    try:
        claims = await aclaims_of(request, ctx)
        await current_user_of(request, ctx)
    except AuthenticationFailed:
        return None
    return claims


def to_signin(request: Request[Any, Any, Any]) -> Redirect:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/?next={quote(target, safe='')}", status_code=303)


def forbidden(viewer: Claims, message: str) -> Response[str]:
    return render("error.html", 403, viewer=viewer, heading="Not allowed", message=message)


def not_found(viewer: Claims | None, message: str) -> Response[str]:
    return render("error.html", 404, viewer=viewer, heading="Not found", message=message)


def invalid(viewer: Claims | None, message: str) -> Response[str]:
    return render("error.html", 422, viewer=viewer, heading="Invalid request", message=message)


def parse_id(value: str | None) -> int | None:
    """A positive BIGINT from a query string, or None (absent or not one)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    n = int(value)
    return n if 1 <= n < 2**63 else None
