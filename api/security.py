"""The perimeter: who may change state, with which body, and what every answer carries.

Three rules, each written once and applied to every route:

- **Same origin, and a CSRF token, for cookie writes.** The session cookie
  exists so the pages can read; a browser attaches it to any site's form
  post. A state-changing request (POST, PUT, PATCH, DELETE) authenticated by
  the cookie must come from our own origin (``Origin``, or ``Referer`` when
  there is none: ``settings.public_url``'s scheme://host:port) and carry
  ``X-CSRF-Token`` equal to the ``coachpay_csrf`` cookie set at sign-in,
  which is an HMAC of the session token (``csrf_token``): it cannot be
  planted for another session or reused with one. ``Authorization: Bearer``
  requests are not cookie-authenticated (no other site can add that header)
  and need neither. Sign-in and sign-out (``ORIGIN_ONLY``) need the origin
  check only: a cross-site form must not sign a victim into the attacker's
  account.
- **A body is the type the route reads.** JSON routes take
  ``application/json`` (``text/plain`` is how a cross-site form sends JSON
  without a preflight); routes that read forms declare ``BODY_TYPES``. Anything
  else is a 415 before any dependency runs, so nothing is written.
- **Headers on every answer** (``SecurityHeaders``): a CSP that forbids
  framing and, on our pages, runs only elements carrying this response's
  nonce; ``nosniff``; ``Referrer-Policy: same-origin``; ``X-Frame-Options:
  DENY``; ``Cache-Control: no-store`` on everything but the anonymous schema.

Both Stripe webhook paths are exempt from the first two: Stripe's signature
over the exact bytes is their check, and the fast path in front of Litestar
must answer as the routes do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import SESSION_COOKIE, cookie_authenticated
from core.errors import DomainError, Forbidden
from core.settings import Settings

CSRF_COOKIE = "coachpay_csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Handler opt keys: the body types a route reads (default: JSON only), and
# "origin check only" for the sign-in/sign-out forms.
BODY_TYPES = "body_types"
ORIGIN_ONLY = "origin_only"
_CSRF_PURPOSE = b"coachpay:csrf:v1"
_NONCE_STATE_KEY = "coachpay_csp_nonce"
_nonce: ContextVar[str] = ContextVar("coachpay_csp_nonce", default="")


class CrossSiteRequest(Forbidden):
    """A cookie-authenticated write from another origin, or without the CSRF token."""


class UnsupportedMediaType(DomainError):
    """A body of a type the route does not read (answered 415)."""


Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute http(s) URL; None for anything else ("null")."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


@lru_cache(maxsize=8)
def _csrf_key(jwt_secret: str) -> bytes:
    # A key of its own (purpose label): a CSRF token never passes as anything else.
    return hmac.new(jwt_secret.encode(), _CSRF_PURPOSE, hashlib.sha256).digest()


def csrf_token(settings: Settings, session_token: str) -> str:
    """The CSRF token of one session: fixed by the session token, unknowable without our key."""
    key = _csrf_key(settings.jwt_secret.get_secret_value())
    mac = hmac.new(key, session_token.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def _header(connection: ASGIConnection[Any, Any, Any, Any], name: str) -> str | None:
    return connection.headers.get(name)


def check_same_origin(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> None:
    own = origin_of(settings.public_url)
    sent = _header(connection, "origin")
    source = "Origin"
    if sent is None:
        sent, source = _header(connection, "referer"), "Referer"
    if sent is None:
        raise CrossSiteRequest("a cookie-authenticated write needs an Origin or Referer header")
    if own is None or origin_of(sent) != own:
        raise CrossSiteRequest(f"{source} is not this site's origin")


def check_csrf_token(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> None:
    session = connection.cookies.get(SESSION_COOKIE) or ""
    sent = _header(connection, CSRF_HEADER) or ""
    expected = csrf_token(settings, session)
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode()):
        raise CrossSiteRequest(
            f"X-CSRF-Token must be the value of the {CSRF_COOKIE} cookie of this session"
        )


def check_body_type(headers: Mapping[str, str], accepted: tuple[str, ...]) -> None:
    """The one content-type rule: a body (or a declared type) must be one the route reads."""
    declared = headers.get("content-type")
    if declared is None:
        length = headers.get("content-length", "0").strip()
        if length in ("", "0") and "transfer-encoding" not in headers:
            return  # no body at all: routes that take one treat it as {}
        raise UnsupportedMediaType(f"a request body needs Content-Type: {' or '.join(accepted)}")
    media = declared.split(";", 1)[0].strip().lower()
    if media not in accepted:
        raise UnsupportedMediaType(f"Content-Type must be {' or '.join(accepted)}")


@dataclass(frozen=True, slots=True)
class Perimeter:
    """What the guard needs, kept in ``app.state[PERIMETER]`` by create_app."""

    settings: Settings  # public_url is our origin; the JWT secret keys the CSRF token
    signed_paths: frozenset[str]  # the Stripe webhooks: their signature is the check


PERIMETER = "coachpay_perimeter"


async def perimeter_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """App-wide guard (before every route's own guards and dependencies): the CSRF and
    content-type rules for state-changing requests. Async: it never blocks."""
    if connection.scope.get("method") not in UNSAFE_METHODS:
        return
    perimeter: Perimeter = connection.app.state[PERIMETER]
    if connection.scope["path"].rstrip("/") in perimeter.signed_paths:
        return
    settings = perimeter.settings
    if handler.opt.get(ORIGIN_ONLY):
        check_same_origin(connection, settings)
    elif cookie_authenticated(connection):
        check_same_origin(connection, settings)
        check_csrf_token(connection, settings)
    check_body_type(connection.headers, tuple(handler.opt.get(BODY_TYPES, (JSON,))))


# --- headers -------------------------------------------------------------------------------

_STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Our pages: scripts and styles from our own origin (api/static) or carrying this
# response's nonce; no inline script runs. The templates also use style=""
# attributes (a chart legend's colour): those are allowed by style-src-attr;
# they cannot run code.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self' 'nonce-{n}'; style-src 'self' 'nonce-{n}'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI at /schema loads its bundle and CSS from the app (the swagger-ui-bundle
# package's files) and injects styles at run time; its inline start-up script
# carries the nonce (SchemaPage).
_SCHEMA_CSP = (
    "default-src 'none'; script-src 'self' 'nonce-{n}'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
_REPLACED = frozenset({b"content-security-policy", b"cache-control", *(k for k, _ in _ALWAYS)})
SCHEMA_PREFIX = "/schema"


def current_nonce() -> str:
    """This response's CSP nonce (for ``<script nonce=...>`` / ``<style nonce=...>``)."""
    return _nonce.get()


def template_nonce(_: Mapping[str, Any]) -> str:
    """``{{ csp_nonce() }}`` in a template."""
    return _nonce.get()


class SecurityHeaders:
    """ASGI: a fresh nonce per request, and the security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})[_NONCE_STATE_KEY] = nonce
        token = _nonce.set(nonce)
        path = scope["path"]
        anonymous = not any(k in (b"authorization", b"cookie") for k, _ in scope["headers"])
        cacheable = anonymous and path.startswith(SCHEMA_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k not in _REPLACED]
                html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                if not html:
                    csp = _STRICT_CSP
                elif path.startswith(SCHEMA_PREFIX):
                    csp = _SCHEMA_CSP.format(n=nonce)
                else:
                    csp = _PAGE_CSP.format(n=nonce)
                headers.append((b"content-security-policy", csp.encode()))
                headers.extend(_ALWAYS)
                if not cacheable:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, receive, send_with_headers)
        finally:
            _nonce.reset(token)


class SchemaPage(SwaggerRenderPlugin):
    """Swagger UI whose inline scripts carry the response's CSP nonce."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        page = super().render(request, openapi_schema)
        nonce = request.scope.get("state", {}).get(_NONCE_STATE_KEY, "")
        return page.replace(b"<script", f'<script nonce="{nonce}"'.encode())
