"""Access tokens of the marketplace's identity provider, verified against its JWKS.

The keys come from ``COACHPAY_OIDC_JWKS_URL`` through PyJWT's ``PyJWKClient``
(urllib, blocking), always in a worker thread so the event loop never waits
on the provider. They are kept by ``kid``: a token with a kid we do not know
triggers a refetch, at most once every ``oidc_jwks_min_refetch_seconds`` (a
flood of made-up kids costs the provider one request per interval), and the
set is refetched when older than ``oidc_jwks_lifespan_seconds``, so a key the
provider removed is refused from the next refresh on.

Algorithms come from the settings, never from the token, and are asymmetric
only (core/settings.py refuses HS*): a public key can never serve as an HMAC
secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from core.errors import DomainError, Forbidden
from core.settings import Settings
from core.users import MAX_ISSUER_LENGTH, ROLES, Role

MAX_ROLE_NAMES = 100
FETCH_TIMEOUT_SECONDS = 5


class ProviderUnavailable(DomainError):
    """Raised as AuthenticationFailed by the caller (kept apart for the message)."""


class NoCoachpayRole(Forbidden):
    """A valid provider token whose roles map to no coachpay role (or to several)."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    issuer: str
    audience: str | None
    jwks_url: str
    algorithms: tuple[str, ...]
    role_path: tuple[str, ...]
    role_map: dict[str, Role]
    min_refetch: float
    lifespan: float

    @classmethod
    def of(cls, settings: Settings) -> ProviderConfig | None:
        if not settings.oidc_enabled:
            return None
        assert settings.oidc_issuer and settings.oidc_jwks_url
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            algorithms=tuple(settings.oidc_algorithms.split(",")),
            role_path=tuple(settings.oidc_role_claim.split(".")),
            role_map={k: Role(v) for k, v in settings.oidc_roles.items()},
            min_refetch=settings.oidc_jwks_min_refetch_seconds,
            lifespan=settings.oidc_jwks_lifespan_seconds,
        )


class ProviderKeys:
    """The provider's signing keys by kid, refreshed in a thread, refetches bounded."""

    def __init__(self, config: ProviderConfig, *, now: Callable[[], float] = time.monotonic):
        self._config = config
        self._client = PyJWKClient(
            config.jwks_url, cache_jwk_set=False, cache_keys=False, timeout=FETCH_TIMEOUT_SECONDS
        )
        self._now = now
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def get(self, kid: str) -> PyJWK | None:
        return self._keys.get(kid)

    def stale(self) -> bool:
        return self._fetched_at is not None and (
            self._now() - self._fetched_at >= self._config.lifespan
        )

    def _may_fetch(self, kid: str | None) -> bool:
        if self._fetched_at is None:
            return True
        age = self._now() - self._fetched_at
        if age >= self._config.lifespan:
            return True
        return kid is not None and kid not in self._keys and age >= self._config.min_refetch

    async def refresh(self, kid: str | None = None) -> set[str]:
        """Refetch if allowed (first use, stale, or an unknown ``kid`` past the bound);
        the kids that disappeared."""
        async with self._lock:  # concurrent unknown kids share one fetch
            if not self._may_fetch(kid):
                return set()
            self._fetched_at = self._now()  # a failed fetch counts too: no hammering
            self.fetches += 1
            try:
                keys = await asyncio.to_thread(self._client.get_signing_keys, True)
            except jwt.PyJWKClientError as exc:
                raise ProviderUnavailable(f"identity provider keys unavailable: {exc}") from None
            fresh = {k.key_id: k for k in keys if k.key_id}
            removed = set(self._keys) - set(fresh)
            self._keys = fresh
            return removed


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) unverified: only to pick the verifier and the key. Parsed
    here (not jwt.decode): the verified decode that follows parses it again, and
    this runs on every token the memo does not know."""
    header = jwt.get_unverified_header(token)
    parts = token.split(".")
    if len(parts) != 3:
        raise jwt.DecodeError("not a JWS in compact form")
    raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise jwt.DecodeError("payload is not an object")
    return header, payload


def decode(config: ProviderConfig, keys: ProviderKeys, token: str, leeway: int) -> dict[str, Any]:
    """The verified payload; PyJWTError (or LookupError for an unknown kid) otherwise."""
    header = jwt.get_unverified_header(token)
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise LookupError("token signed with an unknown key")
    alg = header.get("alg")
    if alg not in config.algorithms:
        raise jwt.InvalidAlgorithmError("algorithm not allowed")
    # key.key is a cryptography public key: PyJWT's prepare_key refuses it for
    # another family (an EC key for RS256), and HS* is never in the list.
    payload: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=[alg],
        issuer=config.issuer,
        audience=config.audience,
        options={
            "require": ["exp", "sub", "iss"] + (["aud"] if config.audience else []),
            "verify_aud": config.audience is not None,
        },
        leeway=leeway,
    )
    return payload


def role_of(config: ProviderConfig, payload: dict[str, Any]) -> Role:
    """The one coachpay role the token's role claim maps to.

    Raises TypeError for a claim of the wrong shape (the caller answers 401),
    NoCoachpayRole (403) for a missing claim, or names that map to none or to
    several coachpay roles."""
    value: Any = payload
    for part in config.role_path:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        raise NoCoachpayRole("the token carries no role")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or len(names) > MAX_ROLE_NAMES:
        raise TypeError("role claim must be a string or a list of strings")
    if not all(isinstance(n, str) for n in names):
        raise TypeError("role claim must be a string or a list of strings")
    mapped = {config.role_map[n] for n in names if n in config.role_map}
    if not mapped:
        raise NoCoachpayRole("none of the token's roles is a coachpay role")
    if len(mapped) > 1:
        raise NoCoachpayRole("the token's roles map to several coachpay roles")
    (role,) = mapped
    assert role in ROLES
    return role


def issuer_ok(iss: object) -> bool:
    return isinstance(iss, str) and 1 <= len(iss) <= MAX_ISSUER_LENGTH
