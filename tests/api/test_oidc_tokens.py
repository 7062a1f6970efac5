"""Provider tokens (api/oidc.py through api.auth.TokenVerifier), against a JWKS served
on 127.0.0.1: keys, rotation, the refetch bound, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from api.auth import AuthenticationFailed, TokenVerifier, mint_token
from api.oidc import NoCoachpayRole
from core.errors import ConfigurationError
from core.settings import Settings, load_settings
from core.users import Role
from tests.api.oidc_support import ISSUER, Provider, oidc_settings, serve

SECRET = "test-jwt-secret-0123456789-abcdefghijklmnop"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    p.add_key("k1")
    with serve(p):
        yield p


def _settings(provider: Provider, **extra: Any) -> Settings:
    return load_settings(jwt_secret=SECRET, **oidc_settings(provider, **extra))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tv(provider: Provider, clock: Clock) -> TokenVerifier:
    return TokenVerifier(_settings(provider), keys_clock=clock)


async def test_a_provider_token_is_verified_with_its_mapped_role(
    provider: Provider, tv: TokenVerifier
) -> None:
    claims = await tv.averify(provider.token("alice", "coach", email="a@example.com"))
    assert (claims.issuer, claims.sub, claims.role, claims.email) == (
        ISSUER, "alice", Role.COACH, "a@example.com",
    )  # fmt: skip
    assert provider.requests == 1


async def test_es256_and_a_dotted_role_claim(provider: Provider, clock: Clock) -> None:
    provider.add_key("ec1", "ec")
    tv = TokenVerifier(_settings(provider, oidc_role_claim="realm_access.roles"), keys_clock=clock)
    token = provider.token("kc", None, kid="ec1", realm_access={"roles": ["mp-finance"]})
    assert (await tv.averify(token)).role == Role.FINANCE


async def test_our_own_tokens_still_work_beside_the_provider(tv: TokenVerifier) -> None:
    token = mint_token(_settings_own(), "demo", Role.MENTEE)
    claims = await tv.averify(token)
    assert (claims.issuer, claims.role) == ("coachpay", Role.MENTEE)


def _settings_own() -> Settings:
    return load_settings(jwt_secret=SECRET)


async def test_the_key_fetch_runs_off_the_event_loop_thread(
    provider: Provider, tv: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tv.keys is not None
    seen: list[int] = []
    real = tv.keys._client.get_signing_keys

    def spy(refresh: bool = False) -> Any:
        seen.append(threading.get_ident())
        return real(refresh)

    monkeypatch.setattr(tv.keys._client, "get_signing_keys", spy)
    await tv.averify(provider.token())
    assert seen and threading.get_ident() not in seen


async def test_sync_verify_never_fetches(provider: Provider, tv: TokenVerifier) -> None:
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        tv.verify(provider.token())
    assert provider.requests == 0
    await tv.averify(provider.token("b"))
    assert tv.verify(provider.token("c")).sub == "c"  # keys known now: no fetch needed


async def test_rotation_new_kid_is_fetched_removed_kid_refused_after_refresh(
    provider: Provider, tv: TokenVerifier, clock: Clock
) -> None:
    old = provider.token("u", kid="k1")
    await tv.averify(old)
    provider.add_key("k2")
    provider.published.remove("k1")
    clock.t += 31  # past the refetch bound
    assert (await tv.averify(provider.token("u", kid="k2"))).sub == "u"
    assert provider.requests == 2
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        await tv.averify(old)  # the memo was emptied when k1 disappeared
    assert len(tv) == 1


async def test_a_removed_key_is_refused_once_the_set_is_stale(
    provider: Provider, tv: TokenVerifier, clock: Clock
) -> None:
    token = provider.token()
    await tv.averify(token)
    provider.add_key("k2")
    provider.published.remove("k1")
    await tv.averify(token)  # memo hit, set still fresh
    clock.t += 601  # past the lifespan: the next request refreshes
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        await tv.averify(token)


async def test_a_flood_of_unknown_kids_fetches_once_per_interval(
    provider: Provider, tv: TokenVerifier, clock: Clock
) -> None:
    await tv.averify(provider.token())
    provider.add_key("stranger")
    provider.published.remove("stranger")  # signed, never published
    for i in range(50):
        with pytest.raises(AuthenticationFailed):
            await tv.averify(provider.token(f"x{i}", kid="stranger"))
    assert provider.requests == 1  # fetched 0 s ago: no refetch within the bound
    clock.t += 31
    for i in range(50):
        with pytest.raises(AuthenticationFailed):
            await tv.averify(provider.token(f"y{i}", kid="stranger"))
    assert provider.requests == 2


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any], sig: bytes = b"") -> str:
    return ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(sig))
    )


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": "coachpay", "sub": "u", "exp": now + 600,
            "roles": ["marketplace-coach"]}  # fmt: skip
    return {k: v for k, v in {**base, **over}.items() if v is not None}


async def test_alg_none_is_refused(provider: Provider, tv: TokenVerifier) -> None:
    await tv.averify(provider.token())
    with pytest.raises(AuthenticationFailed):
        await tv.averify(_unsigned({"alg": "none", "kid": "k1"}, _claims()))


async def test_hs256_signed_with_the_public_key_is_refused(
    provider: Provider, tv: TokenVerifier
) -> None:
    await tv.averify(provider.token())
    pem = (
        provider.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    import hashlib
    import hmac

    signing = _unsigned({"alg": "HS256", "kid": "k1", "typ": "JWT"}, _claims()).rsplit(".", 1)[0]
    sig = hmac.new(pem, signing.encode(), hashlib.sha256).digest()
    with pytest.raises(AuthenticationFailed, match=r"malformed|algorithm"):
        await tv.averify(f"{signing}.{_b64(sig)}")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"aud": "someone-else"}, "audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"sub": None}, "'sub'"),
        ({"sub": 42}, "malformed"),  # PyJWT refuses a non-string sub
        ({"roles": 7}, "malformed"),
        ({"roles": [["nested"], {"a": 1}]}, "malformed"),
        ({"roles": {"marketplace-coach": True}}, "malformed"),
        ({"roles": ["x"] * 1000}, "malformed"),
        ({"email": {"deep": [1, 2, {"x": None}]}}, None),  # ignored, not a crash
    ],
)
async def test_bad_claims_are_401(
    provider: Provider, tv: TokenVerifier, over: dict[str, Any], message: str | None
) -> None:
    token = jwt.encode(_claims(**over), provider.keys["k1"], "RS256", headers={"kid": "k1"})
    if message is None:
        assert (await tv.averify(token)).email is None
        return
    with pytest.raises(AuthenticationFailed, match=message):
        await tv.averify(token)


async def test_a_wrong_issuer_is_refused_without_any_key_fetch(
    provider: Provider, tv: TokenVerifier
) -> None:
    token = provider.token(iss="https://evil.test")
    with pytest.raises(AuthenticationFailed, match="issuer"):
        await tv.averify(token)
    assert provider.requests == 0


@pytest.mark.parametrize(
    "roles", [None, [], ["offline_access"], "nobody", ["marketplace-coach", "mp-admin"]]
)
async def test_no_single_coachpay_role_is_403(
    provider: Provider, tv: TokenVerifier, roles: Any
) -> None:
    token = jwt.encode(
        _claims(roles=roles) if roles is not None else {**_claims(), "roles": None},
        provider.keys["k1"], "RS256", headers={"kid": "k1"},
    )  # fmt: skip
    with pytest.raises(NoCoachpayRole):
        await tv.averify(token)


@pytest.mark.parametrize("junk", ["x" * 9000, "a.b.c", "....", "e30.e30.e30", "\x00" * 10])
async def test_junk_and_huge_tokens_are_401(tv: TokenVerifier, junk: str) -> None:
    with pytest.raises(AuthenticationFailed):
        await tv.averify(junk)


def test_settings_refuse_symmetric_algorithms_and_bad_role_maps() -> None:
    with pytest.raises(ConfigurationError, match="OIDC_ALGORITHMS"):
        load_settings(oidc_algorithms="RS256,HS256")
    with pytest.raises(ConfigurationError, match="OIDC_ROLE_MAP"):
        load_settings(oidc_role_map="marketplace-coach=root")
    s = load_settings(oidc_role_map="a=coach, b = finance")
    assert s.oidc_roles == {"a": "coach", "b": "finance"}


def test_production_wants_the_whole_provider_block_over_https() -> None:
    s = load_settings(oidc_issuer="https://id.test", oidc_jwks_url="http://id.test/jwks")
    problems = " ".join(s.production_problems())
    assert "COACHPAY_OIDC_AUDIENCE: not set" in problems
    assert "COACHPAY_OIDC_JWKS_URL: must be https" in problems
    assert "COACHPAY_OIDC_ROLE_MAP: empty" in problems
    assert "OIDC" not in " ".join(load_settings().production_problems())
