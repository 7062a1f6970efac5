"""Bearer JWT (HS256) authentication, the session cookie, and role checks.

A token carries ``sub`` (who), ``role`` (mentee, coach, finance, admin) and
``exp``. It arrives as ``Authorization: Bearer <jwt>`` (API clients) or in
the HttpOnly session cookie (the finance and coach pages). Users are
provisioned on first sight of a ``sub``.
"""

from __future__ import annotations

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
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],  # never trust the token's own "alg"
            options={"require": ["exp", "sub", "role"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationFailed("token signature invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(f"token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise AuthenticationFailed("token malformed") from None
    sub, role, email = payload.get("sub"), payload.get("role"), payload.get("email")
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUB_LENGTH:
        raise AuthenticationFailed(f"token 'sub' must be a string of 1..{MAX_SUB_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in sub):
        raise AuthenticationFailed("token 'sub' contains control characters")
    if role not in ROLES:
        raise AuthenticationFailed("token 'role' unknown")
    return Claims(sub=sub, role=Role(role), email=email if isinstance(email, str) else None)


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


def claims_of(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> Claims:
    """The request's verified claims, decoded once per request."""
    state = connection.scope.setdefault("state", {})
    cached = state.get(_CLAIMS_STATE_KEY)
    if isinstance(cached, Claims):
        return cached
    claims = decode_token(settings, token_from(connection))
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
        settings: Settings = connection.app.state["ctx"].settings
        claims = claims_of(connection, settings)
        if claims.role not in wanted:
            raise Forbidden(f"this needs the role {' or '.join(sorted(wanted))}")

    return guard
