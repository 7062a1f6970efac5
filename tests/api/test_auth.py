"""Bearer JWT and session-cookie auth, roles, users provisioned on first sight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import jwt
import pytest
from litestar import Litestar, Router, get
from litestar.testing import AsyncTestClient
from litestar.types import ControllerRouterHandler
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import SESSION_COOKIE
from api.deps import AuthUser, require_role
from core.db import session_factory
from core.users import Role, User
from tests.api.conftest import SAME_ORIGIN, TEST_JWT_SECRET, Tokens


@get("/whoami")
async def whoami(current_user: AuthUser) -> dict[str, object]:
    return {"id": current_user.id, "sub": current_user.sub, "role": current_user.role}


@get("/admin-only", guards=[require_role(Role.ADMIN)])
async def admin_only(current_user: AuthUser) -> dict[str, object]:
    return {"sub": current_user.sub}


@get("/finance-inline")
async def finance_inline(current_user: AuthUser) -> dict[str, object]:
    current_user.require(Role.FINANCE, Role.ADMIN)
    return {"ok": True}


@pytest.fixture(scope="module")
def extra_routes() -> Sequence[ControllerRouterHandler]:
    return [Router(path="/test", route_handlers=[whoami, admin_only, finance_inline])]


def _raw(claims: dict[str, object], secret: str = TEST_JWT_SECRET) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


async def _users(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM users"))).scalar_one())


async def test_valid_token_provisions_user_once(
    app_client: AsyncTestClient[Litestar], tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    first = await app_client.get("/test/whoami", headers=tokens.headers(Role.COACH, "coach-7"))
    again = await app_client.get("/test/whoami", headers=tokens.headers(Role.COACH, "coach-7"))
    assert first.status_code == 200
    assert first.json()["sub"] == "coach-7" and first.json()["role"] == "coach"
    assert again.json()["id"] == first.json()["id"]
    assert await _users(clean_engine) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + "A" * 5000},
    ],
    ids=["missing", "empty", "basic", "garbage", "huge"],
)
async def test_missing_or_malformed_token_401(
    app_client: AsyncTestClient[Litestar], clean_engine: AsyncEngine, headers: dict[str, str]
) -> None:
    resp = await app_client.get("/test/whoami", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"] == "AuthenticationFailed"
    assert await _users(clean_engine) == 0


async def test_bad_tokens_401(
    app_client: AsyncTestClient[Litestar], tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    far = 4_000_000_000
    cases = {
        "bad signature": _raw(
            {"sub": "a", "role": "admin", "exp": far}, "another-secret-0123456789-abcdefghijklmnop"
        ),
        "expired": {"Authorization": f"Bearer {tokens.expired(Role.ADMIN)}"},
        "unknown role": _raw({"sub": "a", "role": "root", "exp": far}),
        "no exp": _raw({"sub": "a", "role": "admin"}),
        "no role": _raw({"sub": "a", "exp": far}),
        "empty sub": _raw({"sub": "", "role": "admin", "exp": far}),
        "long sub": _raw({"sub": "x" * 256, "role": "admin", "exp": far}),
        "numeric sub": _raw({"sub": 5, "role": "admin", "exp": far}),
        "alg none": {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "a", "role": "admin", "exp": far}, None, algorithm="none")
        },
    }
    for name, headers in cases.items():
        resp = await app_client.get("/test/admin-only", headers=headers)
        assert resp.status_code == 401, name
        assert resp.json()["error"] == "AuthenticationFailed", name
    assert await _users(clean_engine) == 0


async def test_wrong_role_403_right_role_200(
    app_client: AsyncTestClient[Litestar], tokens: Tokens
) -> None:
    for role in (Role.MENTEE, Role.COACH, Role.FINANCE):
        resp = await app_client.get("/test/admin-only", headers=tokens.headers(role))
        assert resp.status_code == 403, role
        assert resp.json()["error"] == "Forbidden"
    ok = await app_client.get("/test/admin-only", headers=tokens.headers(Role.ADMIN))
    assert ok.status_code == 200
    inline = await app_client.get("/test/finance-inline", headers=tokens.headers(Role.COACH))
    assert inline.status_code == 403
    allowed = await app_client.get("/test/finance-inline", headers=tokens.headers(Role.FINANCE))
    assert allowed.status_code == 200


async def test_concurrent_first_sight_makes_one_user(
    app_client: AsyncTestClient[Litestar], tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    headers = tokens.headers(Role.MENTEE, "new-mentee")
    responses = await asyncio.gather(
        *(app_client.get("/test/whoami", headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    async with session_factory(clean_engine)() as db:
        count = (await db.execute(select(func.count()).select_from(User))).scalar_one()
    assert count == 1


async def test_token_claiming_another_role_is_refused(
    app_client: AsyncTestClient[Litestar], tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    """A user's role is fixed when first seen: a mentee's subject minted as a coach
    (or an admin) is refused, and the stored role stays."""
    a = await app_client.get("/test/whoami", headers=tokens.headers(Role.MENTEE, "u1"))
    assert a.status_code == 200
    for role in (Role.COACH, Role.ADMIN):
        b = await app_client.get("/test/whoami", headers=tokens.headers(role, "u1"))
        assert b.status_code == 403, b.text
        assert "mentee" in b.json()["detail"]
    async with clean_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT issuer, role FROM users WHERE sub='u1'"))).all()
    assert [tuple(r) for r in rows] == [("coachpay", "mentee")]


async def test_session_cookie_sign_in_and_out(
    app_client: AsyncTestClient[Litestar], tokens: Tokens
) -> None:
    token = tokens.token(Role.FINANCE, "fin-1")
    resp = await app_client.post("/auth/session", json={"token": token}, headers=SAME_ORIGIN)
    assert resp.status_code == 200
    assert resp.json() == {"sub": "fin-1", "role": "finance"}
    set_cookie = resp.headers["set-cookie"]
    assert SESSION_COOKIE in set_cookie and "HttpOnly" in set_cookie
    assert "SameSite=lax" in set_cookie or "SameSite=Lax" in set_cookie
    me = await app_client.get("/test/whoami")  # the client keeps the cookie
    assert me.status_code == 200 and me.json()["sub"] == "fin-1"
    out = await app_client.post("/auth/logout", headers=SAME_ORIGIN)
    assert out.status_code == 200
    app_client.cookies.clear()
    assert (await app_client.get("/test/whoami")).status_code == 401


async def test_session_form_sign_in_redirects_safely(
    app_client: AsyncTestClient[Litestar], tokens: Tokens
) -> None:
    token = tokens.token(Role.FINANCE)
    ok = await app_client.post(
        "/auth/session",
        data={"token": token, "next": "/finance"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/finance"
    evil = await app_client.post(
        "/auth/session",
        data={"token": token, "next": "//evil.example"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert evil.status_code == 303 and evil.headers["location"] == "/"


async def test_session_sign_in_rejects_bad_token(
    app_client: AsyncTestClient[Litestar], tokens: Tokens
) -> None:
    for body in ({"token": "garbage"}, {"token": tokens.expired(Role.ADMIN)}, {}, {"token": 5}):
        resp = await app_client.post("/auth/session", json=body, headers=SAME_ORIGIN)
        assert resp.status_code == 401, body
        assert "set-cookie" not in resp.headers


def test_mint_token_refuses_bad_input(tokens: Tokens) -> None:
    with pytest.raises(ValueError):
        tokens.token("root")
    with pytest.raises(ValueError):
        tokens.token(Role.ADMIN, "x" * 256, ttl=timedelta(minutes=1))
