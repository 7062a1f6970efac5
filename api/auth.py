"""Authentication (three kinds of credential), the session cookie, and role checks.

- **Our tokens** (HS256, ``coachpay token``, the demo): ``sub``, ``role``,
  ``exp``, ``iss`` = ``coachpay`` (or none, for tokens minted before it).
- **Provider tokens** (RS256/ES256 from the marketplace's identity provider,
  api/oidc.py): picked by ``iss`` = ``COACHPAY_OIDC_ISSUER``, verified against
  its JWKS; the role comes from ``COACHPAY_OIDC_ROLE_CLAIM`` through
  ``COACHPAY_OIDC_ROLE_MAP``. No mapped role (or several): 403.
- **API keys** (``cpk_...``, core/api_keys.py): ``Authorization: Bearer`` only,
  never the cookie. ``X-Coachpay-On-Behalf-Of: <subject>`` names the user
  (under the provider's issuer, or ``coachpay`` without a provider); their
  role must be one of the key's. A user not seen yet is provisioned with
  ``X-Coachpay-Role`` (one of the key's roles). Without the header, a key of
  exactly one role acts as itself (issuer ``coachpay:api-key``, subject its prefix).

A token arrives as ``Authorization: Bearer`` or in the HttpOnly session cookie
(the pages; a write with the cookie must come from our origin with
``X-CSRF-Token``, api/security.py). A user is (issuer, subject), provisioned
on first sight with a role that later tokens cannot change (core/users.py).
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

from api import oidc
from core.api_keys import looks_like_key, verify_key
from core.errors import DomainError, Forbidden
from core.settings import Settings
from core.users import MAX_SUB_LENGTH, OWN_ISSUER, ROLES, Role, find_user, provision_user

SESSION_COOKIE = "coachpay_session"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
_CLAIMS_STATE_KEY = "coachpay_claims"
_USER_STATE_KEY = "coachpay_user"
MAX_TOKEN_LENGTH = 8192
API_KEY_ISSUER = "coachpay:api-key"
ON_BEHALF_HEADER = "x-coachpay-on-behalf-of"
ROLE_HEADER = "x-coachpay-role"


class AuthenticationFailed(DomainError):
    """No valid credentials: answered 401 with ``WWW-Authenticate: Bearer``."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: Role
    email: str | None = None
    issuer: str = OWN_ISSUER
    via_key: str | None = None  # the API key's prefix, when a backend acts


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
        "iss": OWN_ISSUER,
        "sub": sub,
        "role": str(role),
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }
    if email:
        claims["email"] = email
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_token(settings: Settings, token: str) -> Claims:
    """Verify one of our HS256 tokens: signature, expiry and claims; AuthenticationFailed
    otherwise."""
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
    if payload.get("iss", OWN_ISSUER) != OWN_ISSUER:
        raise AuthenticationFailed("token issuer unknown")
    return _claims(payload, payload.get("role"), OWN_ISSUER)


def _claims(payload: dict[str, Any], role: object, issuer: str) -> tuple[Claims, float]:
    """Every claim we read, type-checked: a signed token is still input (a list as
    ``role``, an ``exp`` past any float), so each failure is a 401, never a crash."""
    sub, email, exp = (payload.get(k) for k in ("sub", "email", "exp"))
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
    mail = email if isinstance(email, str) and len(email) <= 320 else None
    return Claims(sub=sub, role=Role(role), email=mail, issuer=issuer), expires


class TokenVerifier:
    """Verifies our tokens and the provider's, with a memo of those it has accepted.

    A dashboard polls with one token for its whole life, and verifying it
    (base64, JSON, signature, claim checks) is a tenth of the balance read's
    CPU. The memo is keyed by the whole token, signature included, so only a
    token byte for byte equal to one already verified hits it; a hit still
    checks ``exp``. Refused tokens are never kept, so nobody can fill the memo
    without tokens signed by us or the provider; it holds at most
    ``max_entries`` (the oldest go first), and it is emptied when the
    provider's key set loses a key.

    ``averify`` is the request path: it fetches the provider's keys (in a
    thread) when a token needs them. ``verify`` never fetches: a provider
    token whose key is not known yet is refused.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_entries: int = 10_000,
        now: Callable[[], float] = time.time,
        keys_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._max_entries = max_entries
        self._now = now
        self._memo: dict[str, tuple[Claims, float]] = {}
        self._provider = oidc.ProviderConfig.of(settings)
        self.keys = oidc.ProviderKeys(self._provider, now=keys_clock) if self._provider else None

    def _hit(self, token: str) -> Claims | None:
        hit = self._memo.get(token)
        if hit is None:
            return None
        if self._now() < hit[1] + LEEWAY_SECONDS:  # as PyJWT: expired at exp + leeway
            return hit[0]
        del self._memo[token]  # expired: decode again for PyJWT's own answer
        return None

    def _keep(self, token: str, claims: Claims, exp: float) -> Claims:
        if len(self._memo) >= self._max_entries:
            del self._memo[next(iter(self._memo))]
        self._memo[token] = (claims, exp)
        return claims

    def _kind(self, token: str) -> tuple[str, str | None]:
        """("own" | "provider", the provider token's kid): by ``iss``, never by trying both."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationFailed("token too long")
        try:
            header, payload = oidc.peek(token)
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise AuthenticationFailed("token malformed") from None
        iss = payload.get("iss")
        if self._provider is not None and iss == self._provider.issuer:
            kid = header.get("kid")
            return "provider", kid if isinstance(kid, str) else None
        if iss is None or iss == OWN_ISSUER:
            return "own", None
        raise AuthenticationFailed("token issuer unknown")

    def _decode(self, token: str, kind: str) -> tuple[Claims, float]:
        if kind == "own":
            return _decode(self._settings, token)
        assert self._provider is not None and self.keys is not None
        try:
            payload = oidc.decode(self._provider, self.keys, token, LEEWAY_SECONDS)
            role = oidc.role_of(self._provider, payload)
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("token signature invalid") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("token audience invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"token lacks the {exc.claim!r} claim") from None
        except LookupError:
            raise AuthenticationFailed("token signed with an unknown key") from None
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise AuthenticationFailed("token malformed") from None
        return _claims(payload, role.value, self._provider.issuer)

    def verify(self, token: str) -> Claims:
        hit = self._hit(token)
        if hit is not None:
            return hit
        kind, _ = self._kind(token)
        return self._keep(token, *self._decode(token, kind))

    async def averify(self, token: str) -> Claims:
        if self.keys is not None and self.keys.stale():
            await self._refresh(None)
        hit = self._hit(token)
        if hit is not None:
            return hit
        kind, kid = self._kind(token)
        if kind == "provider" and self.keys is not None and (kid is None or not self.keys.get(kid)):
            await self._refresh(kid)
        return self._keep(token, *self._decode(token, kind))

    async def _refresh(self, kid: str | None) -> None:
        assert self.keys is not None
        try:
            removed = await self.keys.refresh(kid)
        except oidc.ProviderUnavailable as exc:
            raise AuthenticationFailed(str(exc)) from None
        if removed:  # a token signed by a withdrawn key must not live on in the memo
            self._memo.clear()

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
        if looks_like_key(cookie):
            raise AuthenticationFailed("an API key is accepted in the Authorization header only")
        return cookie
    raise AuthenticationFailed("authentication required")


def claims_of(connection: ASGIConnection[Any, Any, Any, Any], tokens: TokenVerifier) -> Claims:
    """The request's verified claims, decoded once per request (sync: never fetches
    keys nor reads API keys; a guard's ``aclaims_of`` ran first on guarded routes)."""
    state = connection.scope.setdefault("state", {})
    cached = state.get(_CLAIMS_STATE_KEY)
    if isinstance(cached, Claims):
        return cached
    token = token_from(connection)
    if looks_like_key(token):
        raise AuthenticationFailed("API keys are accepted on guarded routes only")
    claims = tokens.verify(token)
    state[_CLAIMS_STATE_KEY] = claims
    return claims


async def aclaims_of(connection: ASGIConnection[Any, Any, Any, Any], ctx: Any) -> Claims:
    """``claims_of`` for the request path: tokens of every kind and API keys.
    ``ctx``: the AppContext (settings, factory, clock, tokens)."""
    state = connection.scope.setdefault("state", {})
    cached = state.get(_CLAIMS_STATE_KEY)
    if isinstance(cached, Claims):
        return cached
    token = token_from(connection)
    if looks_like_key(token):
        claims = await _key_claims(connection, ctx, token)
    else:
        claims = await ctx.tokens.averify(token)
    state[_CLAIMS_STATE_KEY] = claims
    return claims


async def current_user_of(connection: ASGIConnection[Any, Any, Any, Any], ctx: Any) -> CurrentUser:
    """The request's user, provisioned once per request: the stored role must be
    the one the credential claims (core.users.provision_user), so a guard never
    lets a known mentee in on a token that says admin."""
    state = connection.scope.setdefault("state", {})
    cached = state.get(_USER_STATE_KEY)
    if isinstance(cached, CurrentUser):
        return cached
    claims = await aclaims_of(connection, ctx)
    # Provisioned in a short transaction of its own: the upsert locks the
    # user's row, which must not be held for the whole request.
    async with ctx.factory() as session, session.begin():
        user = await provision_user(
            session,
            issuer=claims.issuer,
            sub=claims.sub,
            role=claims.role,
            email=claims.email,
            now=ctx.clock.now(),
        )
    current = CurrentUser(id=user.id, sub=user.sub, role=claims.role)
    state[_USER_STATE_KEY] = current
    return current


async def _key_claims(
    connection: ASGIConnection[Any, Any, Any, Any], ctx: Any, token: str
) -> Claims:
    settings: Settings = ctx.settings
    async with ctx.factory() as db, db.begin():
        key = await verify_key(db, token, now=ctx.clock.now())
        if key is None:
            raise AuthenticationFailed("API key unknown or revoked")
        subject = connection.headers.get(ON_BEHALF_HEADER)
        if subject is None:
            if len(key.roles) != 1:
                raise AuthenticationFailed(
                    f"a key of several roles must name the user ({ON_BEHALF_HEADER})"
                )
            (only,) = key.roles
            return Claims(
                sub=key.prefix, role=Role(only), issuer=API_KEY_ISSUER, via_key=key.prefix
            )
        if not 1 <= len(subject) <= MAX_SUB_LENGTH or any(
            ord(c) < 32 or ord(c) == 127 for c in subject
        ):
            raise AuthenticationFailed(
                f"{ON_BEHALF_HEADER} must be a subject of 1..{MAX_SUB_LENGTH}"
            )
        issuer = (
            settings.oidc_issuer if settings.oidc_enabled and settings.oidc_issuer else OWN_ISSUER
        )
        user = await find_user(db, issuer=issuer, sub=subject)
        role = user.role if user is not None else connection.headers.get(ROLE_HEADER)
        if role is None:
            raise Forbidden(f"unknown user: {ROLE_HEADER} (one of the key's roles) provisions them")
        if role not in key.roles:
            raise Forbidden(f"this key may not act as a {role[:16]}")
        return Claims(sub=subject, role=Role(role), issuer=issuer, via_key=key.prefix)


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
    # never blocks (an HMAC check and a dict lookup; the provider's keys are
    # fetched in a thread, an API key read on the async database session).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        ctx = connection.app.state["ctx"]
        claims = await aclaims_of(connection, ctx)
        if claims.role not in wanted:
            raise Forbidden(f"this needs the role {' or '.join(sorted(wanted))}")
        await current_user_of(connection, ctx)  # the stored role must agree

    return guard
