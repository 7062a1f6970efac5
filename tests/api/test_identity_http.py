"""Identity over HTTP: provider tokens beside ours, a user is (issuer, subject), and the
server-to-server API keys (create, list, revoke, act on behalf of a user)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import SESSION_COOKIE
from core.settings import Settings, load_settings
from tests.api.conftest import (
    CONNECT_SECRET,
    PLATFORM_SECRET,
    SAME_ORIGIN,
    STRIPE_TEST_BASE,
    TEST_JWT_SECRET,
    Tokens,
)
from tests.api.oidc_support import ISSUER, Provider, oidc_settings, serve

Client = AsyncTestClient[Litestar]


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    p.add_key("k1")
    with serve(p):
        yield p


@pytest.fixture
def api_settings(commit_db_url: str, provider: Provider) -> Settings:
    return load_settings(
        database_url=commit_db_url, stripe_secret_key="sk_test_coachpay",
        stripe_api_base=STRIPE_TEST_BASE, stripe_max_retries=0, stripe_timeout_seconds=2,
        stripe_webhook_secret=PLATFORM_SECRET, stripe_connect_webhook_secret=CONNECT_SECRET,
        jwt_secret=TEST_JWT_SECRET, public_url="http://testserver.local", run_jobs=False,
        db_pool_size=5, **oidc_settings(provider),
    )  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


async def test_provider_token_and_our_token_of_one_subject_are_two_people(
    app_client: Client, provider: Provider, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    ours = await app_client.get("/v1/coaches/me/balance", headers=tokens.headers("coach", "sam"))
    theirs = await app_client.get(
        "/v1/coaches/me/balance", headers=_bearer(provider.token("sam", "coach"))
    )
    assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
    assert ours.json()["coach_id"] != theirs.json()["coach_id"]
    again = await app_client.get(
        "/v1/coaches/me/balance", headers=_bearer(provider.token("sam", "coach"))
    )
    assert again.json()["coach_id"] == theirs.json()["coach_id"]
    rows = await _rows(clean_engine, "SELECT issuer, role FROM users WHERE sub = 'sam' ORDER BY id")
    assert rows == [("coachpay", "coach"), (ISSUER, "coach")]


async def test_a_provider_user_cannot_change_role_by_token(
    app_client: Client, provider: Provider, clean_engine: AsyncEngine
) -> None:
    r = await app_client.get("/v1/bookings", headers=_bearer(provider.token("pat", "mentee")))
    assert r.status_code == 200, r.text
    r = await app_client.get("/v1/admin/api-keys", headers=_bearer(provider.token("pat", "admin")))
    assert r.status_code == 403, r.text
    assert await _rows(clean_engine, "SELECT role FROM users WHERE sub='pat'") == [("mentee",)]


@pytest.mark.parametrize(
    "token",
    [
        "x" * 20_000,
        "e30.e30.e30",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOjF9.",
    ],
)
async def test_hostile_tokens_are_401_never_500(app_client: Client, token: str) -> None:
    r = await app_client.get("/v1/bookings", headers=_bearer(token))
    assert r.status_code in (401, 431), r.text


async def test_a_provider_token_without_a_coachpay_role_is_403(
    app_client: Client, provider: Provider, clean_engine: AsyncEngine
) -> None:
    r = await app_client.get("/v1/bookings", headers=_bearer(provider.token("z", None)))
    assert r.status_code == 403, r.text
    assert await _rows(clean_engine, "SELECT id FROM users") == []


async def test_provider_token_signs_in_to_the_pages(app_client: Client, provider: Provider) -> None:
    token = provider.token("fin", "finance")
    r = await app_client.post("/auth/session", json={"token": token}, headers=SAME_ORIGIN)
    assert r.status_code == 200, r.text
    assert r.json() == {"sub": "fin", "role": "finance"}


async def _new_key(client: Client, tokens: Tokens, roles: list[str], name: str = "backend") -> Any:
    r = await client.post(
        "/v1/admin/api-keys", json={"name": name, "roles": roles}, headers=tokens.headers("admin")
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_api_key_is_shown_once_and_stored_hashed(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    made = await _new_key(app_client, tokens, ["mentee", "coach"])
    key = made["key"]
    assert key.startswith("cpk_") and key.startswith(made["api_key"]["prefix"])
    listed = await app_client.get("/v1/admin/api-keys", headers=tokens.headers("admin"))
    assert key not in listed.text and listed.json()["data"][0]["roles"] == ["coach", "mentee"]
    stored = await _rows(clean_engine, "SELECT key_hash, prefix FROM api_keys")
    assert stored == [(hashlib.sha256(key.encode()).digest(), key[:12])]


async def test_api_key_acts_on_behalf_of_a_user_within_its_roles(
    app_client: Client, tokens: Tokens, provider: Provider, clean_engine: AsyncEngine
) -> None:
    key = (await _new_key(app_client, tokens, ["mentee"]))["key"]
    as_user = {**_bearer(key), "X-Coachpay-On-Behalf-Of": "mia"}
    r = await app_client.get("/v1/bookings", headers=as_user)
    assert r.status_code == 403, r.text  # unknown user, no role named
    r = await app_client.get("/v1/bookings", headers={**as_user, "X-Coachpay-Role": "coach"})
    assert r.status_code == 403, r.text  # not one of the key's roles
    r = await app_client.get("/v1/bookings", headers={**as_user, "X-Coachpay-Role": "mentee"})
    assert r.status_code == 200, r.text
    rows = await _rows(clean_engine, "SELECT issuer, role FROM users WHERE sub='mia'")
    assert rows == [(ISSUER, "mentee")]  # under the provider's issuer
    # The same person signing in with the provider's token is that user.
    own = await app_client.get("/v1/bookings", headers=_bearer(provider.token("mia", "mentee")))
    assert own.status_code == 200
    assert len(await _rows(clean_engine, "SELECT id FROM users WHERE sub='mia'")) == 1
    # A coach exists: a mentee-scoped key may not act as them.
    await app_client.get("/v1/coaches/me/balance", headers=_bearer(provider.token("cy", "coach")))
    r = await app_client.get(
        "/v1/coaches/me/balance", headers={**_bearer(key), "X-Coachpay-On-Behalf-Of": "cy"}
    )
    assert r.status_code == 403, r.text
    used = await _rows(clean_engine, "SELECT last_used_at IS NOT NULL FROM api_keys")
    assert used == [(True,)]


async def test_api_key_writes_need_no_csrf_and_never_work_as_a_cookie(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    key = (await _new_key(app_client, tokens, ["admin"]))["key"]
    # A one-role key acts as itself; no Origin, no CSRF token: it is not a cookie.
    r = await app_client.post(
        "/v1/admin/api-keys", json={"name": "second", "roles": ["finance"]}, headers=_bearer(key)
    )
    assert r.status_code == 201, r.text
    app_client.cookies.set(SESSION_COOKIE, key)
    r = await app_client.get("/v1/admin/api-keys")
    assert r.status_code == 401, r.text
    r = await app_client.post("/auth/session", json={"token": key}, headers=SAME_ORIGIN)
    assert r.status_code == 401, r.text


async def test_revoked_and_wrong_keys_are_401(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    made = await _new_key(app_client, tokens, ["finance"])
    key = made["key"]
    assert (await app_client.get("/v1/finance/summary", headers=_bearer(key))).status_code == 200
    forged = key[:12] + "A" * (len(key) - 12)
    assert (await app_client.get("/v1/finance/summary", headers=_bearer(forged))).status_code == 401
    r = await app_client.delete(
        f"/v1/admin/api-keys/{made['api_key']['id']}", headers=tokens.headers("admin")
    )
    assert r.status_code == 200 and r.json()["revoked_at"], r.text
    assert (await app_client.get("/v1/finance/summary", headers=_bearer(key))).status_code == 401
    r = await app_client.delete("/v1/admin/api-keys/999999", headers=tokens.headers("admin"))
    assert r.status_code == 404, r.text


async def test_a_key_of_several_roles_must_name_the_user(
    app_client: Client, tokens: Tokens
) -> None:
    key = (await _new_key(app_client, tokens, ["finance", "admin"]))["key"]
    assert (await app_client.get("/v1/finance/summary", headers=_bearer(key))).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "roles": ["root"]},
        {"name": "", "roles": ["admin"]},
        {"name": "x", "roles": []},
        {"name": "x", "roles": "admin"},
        {"name": "x" * 500, "roles": ["admin"]},
        {"name": "x", "roles": [1]},
    ],
)
async def test_bad_key_requests_are_422_and_write_nothing(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, body: Any
) -> None:
    r = await app_client.post("/v1/admin/api-keys", json=body, headers=tokens.headers("admin"))
    assert r.status_code == 422, r.text
    assert await _rows(clean_engine, "SELECT id FROM api_keys") == []


async def test_hostile_on_behalf_of_is_401(app_client: Client, tokens: Tokens) -> None:
    key = (await _new_key(app_client, tokens, ["mentee"]))["key"]
    for subject in ("x" * 300, "a\tb"):
        r = await app_client.get(
            "/v1/bookings", headers={**_bearer(key), "X-Coachpay-On-Behalf-Of": subject}
        )
        assert r.status_code == 401, r.text


async def test_an_admin_changes_a_role_then_only_the_new_role_is_accepted(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    r = await app_client.get("/v1/bookings", headers=tokens.headers("mentee", "ro"))
    assert r.status_code == 200, r.text
    (uid,) = (await _rows(clean_engine, "SELECT id FROM users WHERE sub = 'ro'"))[0]
    url = f"/v1/admin/users/{uid}"
    r = await app_client.patch(url, json={"role": "root"}, headers=tokens.headers("admin"))
    assert r.status_code == 422, r.text
    r = await app_client.patch(url, json={"role": "coach"}, headers=tokens.headers("admin"))
    assert r.status_code == 200 and r.json()["role"] == "coach", r.text
    coach = await app_client.get("/v1/coaches/me/balance", headers=tokens.headers("coach", "ro"))
    assert coach.status_code == 200 and coach.json()["coach_id"] == uid
    mentee = await app_client.get("/v1/bookings", headers=tokens.headers("mentee", "ro"))
    assert mentee.status_code == 403
    audit = await _rows(clean_engine, "SELECT action FROM audit_log WHERE entity_type = 'user'")
    assert audit == [("user.role_changed",)]
    r = await app_client.patch(
        "/v1/admin/users/0", json={"role": "coach"}, headers=tokens.headers("admin")
    )
    assert r.status_code == 404, r.text
