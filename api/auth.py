"""Bearer JWT (HS256) authentication, the session cookie, and role checks.

A token carries ``sub`` (who), ``role`` (mentee, coach, finance, admin) and
``exp``. It arrives as ``Authorization: Bearer <jwt>`` (API clients) or in
the HttpOnly session cookie (the finance and coach pages; a write with the
cookie must also come from our origin with ``X-CSRF-Token``, api/security.py).
Users are provisioned on first sight of a ``sub``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.errors import DomainError, Forbidden
from core.settings import Settings
from core.users import MAX_SUB_LENGTH, ROLES, Role

SESSION_COOKIE = "coachpay_session"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
_CLAIMS_STATE_KEY = "coachpay_claims"


class AuthenticationFailed(DomainError):
    """No valid credentials: answered 401 with ``WWW-Authenticate: Bearer``."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: Role
    email: str | None = None


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: int
    sub: str
    role: Role

    def require(self, *roles: Role | str) -> None:
        """Raise Forbidden unless this user has one of ``roles`` (for checks inside handlers)."""
        if self.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(str(r) for r in roles)}")


def mint_token(
    settings: Settings,
    sub: str,
    role: Role | str,
    ttl: timedelta | None = None,
    *,
    now: datetime | None = None,
    email: str | None = None,
) -> str:
    """A signed token for ``sub`` (local use, tests, the demo)."""
    if str(role) not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {sorted(ROLES)}")
    if not 1 <= len(sub) <= MAX_SUB_LENGTH:
        raise ValueError(f"sub must be 1..{MAX_SUB_LENGTH} characters")
    issued = now or datetime.now(UTC)
    expires = issued + (ttl if ttl is not None else timedelta(minutes=settings.jwt_ttl_minutes))
    claims: dict[str, Any] = {
        "sub": sub,
        "role": str(role),
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }
    if email:
        claims["email"] = email
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_token(settings: Settings, token: str) -> Claims:
    """Verify signature, expiry and claims; AuthenticationFailed otherwise."""
    return _decode(settings, token)[0]


def _decode(settings: Settings, token: str) -> tuple[Claims, float]:
    """The claims and the token's ``exp`` (epoch seconds)."""
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],  # never trust the token's own "alg"
            options={"require": ["exp", "sub", "role"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationFailed("token signature invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(f"token lacks the {exc.claim!r} claim") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise AuthenticationFailed("token malformed") from None
    return _claims(payload)


def _claims(payload: dict[str, Any]) -> tuple[Claims, float]:
    """Every claim we read, type-checked: a signed token is still input (a list as
    ``role``, an ``exp`` past any float), so each failure is a 401, never a crash."""
    sub, role, email, exp = (payload.get(k) for k in ("sub", "role", "email", "exp"))
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUB_LENGTH:
        raise AuthenticationFailed(f"token 'sub' must be a string of 1..{MAX_SUB_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in sub):
        raise AuthenticationFailed("token 'sub' contains control characters")
    if not isinstance(role, str) or role not in ROLES:
        raise AuthenticationFailed("token 'role' unknown")
    # PyJWT accepts anything int() takes ("123", 10**400); we keep a plain number.
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthenticationFailed("token 'exp' must be a number")
    try:
        expires = float(exp)
    except OverflowError:
        raise AuthenticationFailed("token 'exp' out of range") from None
    if not math.isfinite(expires):
        raise AuthenticationFailed("token 'exp' out of range")
    claims = Claims(sub=sub, role=Role(role), email=email if isinstance(email, str) else None)
    return claims, expires


class TokenVerifier:
    """``decode_token`` with a memo of the tokens it has accepted.

    A dashboard polls with one token for its whole life, and verifying it
    (base64, JSON, HMAC, claim checks) is a tenth of the balance read's CPU.
    The memo is keyed by the whole token, signature included, so only a
    token byte for byte equal to one already verified with this secret hits
    it; a hit still checks ``exp``. Refused tokens are never kept, so
    nobody can fill the memo without tokens signed by us; it holds at most
    ``max_entries`` (the oldest go first).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_entries: int = 10_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._max_entries = max_entries
        self._now = now
        self._memo: dict[str, tuple[Claims, float]] = {}

    def verify(self, token: str) -> Claims:
        hit = self._memo.get(token)
        if hit is not None:
            if self._now() < hit[1] + LEEWAY_SECONDS:  # as PyJWT: expired at exp + leeway
                return hit[0]
            del self._memo[token]  # expired: decode again for PyJWT's own answer
        claims, exp = _decode(self._settings, token)
        if len(self._memo) >= self._max_entries:
            del self._memo[next(iter(self._memo))]
        self._memo[token] = (claims, exp)
        return claims

    def __len__(self) -> int:
        return len(self._memo)


def cookie_authenticated(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether ``token_from`` would take the session cookie: no Authorization header
    (which no other site can make a browser send) and the cookie present."""
    return "authorization" not in connection.headers and bool(
        connection.cookies.get(SESSION_COOKIE)
    )


def token_from(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        return value.strip()
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie
    raise AuthenticationFailed("authentication required")


def claims_of(connection: ASGIConnection[Any, Any, Any, Any], tokens: TokenVerifier) -> Claims:
    """The request's verified claims, decoded once per request."""
    state = connection.scope.setdefault("state", {})
    cached = state.get(_CLAIMS_STATE_KEY)
    if isinstance(cached, Claims):
        return cached
    claims = tokens.verify(token_from(connection))
    state[_CLAIMS_STATE_KEY] = claims
    return claims


def require_role(*roles: Role | str) -> Any:
    """A route guard: 401 without a valid token, 403 for another role.

    ``@get("/x", guards=[require_role(Role.ADMIN)])``. Inside a handler,
    ``current_user.require(Role.ADMIN)`` does the same for the user at hand.
    """
    wanted = frozenset(str(r) for r in roles)
    unknown = wanted - ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    # async: Litestar runs a sync guard in a worker thread (a thread handoff per
    # request, measured ~0.3 ms of CPU and more latency on a busy box); this one
    # never blocks (an HMAC check and a dict lookup).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        claims = claims_of(connection, connection.app.state["ctx"].tokens)
        if claims.role not in wanted:
            raise Forbidden(f"this needs the role {' or '.join(sorted(wanted))}")

    return guard
