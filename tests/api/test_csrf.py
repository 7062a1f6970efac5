"""The session cookie reads pages; it does not move money (api/security.py).

The target: pausing a coach's payouts, as an admin signed in with the cookie.
Every cross-site shape of that request is a 403 with nothing written; the same
request from our own page, with the session's CSRF token, goes through.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import SESSION_COOKIE
from core.settings import Settings
from tests.api.conftest import SAME_ORIGIN, Tokens
from tests.api.perimeter_support import row_counts

Client = AsyncTestClient[Litestar]
EVIL = "https://evil.example"
CSRF_COOKIE = "coachpay_csrf"


async def _sign_in(client: Client, token: str) -> str:
    r = await client.post("/auth/session", json={"token": token}, headers=SAME_ORIGIN)
    assert r.status_code == 200, r.text
    return r.cookies.get(CSRF_COOKIE, "")


def csrf_token(settings: Settings, session: str) -> str:
    from api.security import csrf_token as token_of

    return token_of(settings, session)


@pytest.fixture
async def coach_id(app_client: Client, tokens: Tokens) -> int:
    """A coach with a profile, so a pause would really change something."""
    me = await app_client.get("/v1/coaches/me/account", headers=tokens.headers("coach"))
    cid = int(me.json()["coach_id"])
    r = await app_client.patch(
        f"/v1/admin/coaches/{cid}", json={"hold_hours": 48}, headers=tokens.headers("admin")
    )
    assert r.status_code == 200, r.text
    return cid


async def _paused(engine: AsyncEngine, coach_id: int) -> bool:
    async with engine.connect() as conn:
        sql = text("SELECT payouts_paused FROM coach_profiles WHERE user_id = :c")
        return bool((await conn.execute(sql, {"c": coach_id})).scalar_one())


async def test_cookie_writes_from_elsewhere_are_refused(
    app_client: Client,
    tokens: Tokens,
    coach_id: int,
    clean_engine: AsyncEngine,
    api_settings: Settings,
) -> None:
    # The attacker signs in to their own account first (their CSRF token), then the victim.
    other = await _sign_in(app_client, tokens.token("admin", "admin-attacker"))
    app_client.cookies.clear()
    csrf = await _sign_in(app_client, tokens.token("admin", "admin-victim"))
    url = f"/v1/admin/coaches/{coach_id}/payouts/pause"
    form = {
        "content": b"reason=gotcha",
        "headers": {"Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL},
    }
    attacks = {
        "cross-site form": form,
        "cross-site text/plain JSON": {
            "content": b'{"reason": "gotcha"}',
            "headers": {"Content-Type": "text/plain", "Origin": EVIL},
        },
        "cross-site JSON with the token": {
            "json": {"reason": "x"},
            "headers": {"Origin": EVIL, "X-CSRF-Token": csrf},
        },
        "no token": {"json": {"reason": "x"}, "headers": SAME_ORIGIN},
        "another session's token": {
            "json": {"reason": "x"},
            "headers": {**SAME_ORIGIN, "X-CSRF-Token": other},
        },
        "made-up token": {
            "json": {"reason": "x"},
            "headers": {**SAME_ORIGIN, "X-CSRF-Token": "A" * 43},
        },
        "no Origin, no Referer": {"json": {"reason": "x"}, "headers": {"X-CSRF-Token": csrf}},
        "Origin null": {
            "json": {"reason": "x"},
            "headers": {"Origin": "null", "X-CSRF-Token": csrf},
        },
        "other port": {
            "json": {"reason": "x"},
            "headers": {"Origin": "http://testserver.local:8443", "X-CSRF-Token": csrf},
        },
        "other scheme": {
            "json": {"reason": "x"},
            "headers": {"Origin": "https://testserver.local", "X-CSRF-Token": csrf},
        },
        "look-alike host": {
            "json": {"reason": "x"},
            "headers": {"Origin": "http://testserver.local.evil.example", "X-CSRF-Token": csrf},
        },
        "cross-site Referer": {
            "json": {"reason": "x"},
            "headers": {"Referer": f"{EVIL}/page", "X-CSRF-Token": csrf},
        },
    }
    before = await row_counts(clean_engine)
    for name, kw in attacks.items():
        r = await app_client.post(url, **kw)  # type: ignore[arg-type]
        assert r.status_code == 403, (name, r.status_code, r.text)
        assert r.json()["error"] == "CrossSiteRequest", (name, r.text)
    # A planted CSRF cookie with a header to match: the token is bound to the session.
    app_client.cookies.set(CSRF_COOKIE, other)
    r = await app_client.post(
        url, json={"reason": "x"}, headers={**SAME_ORIGIN, "X-CSRF-Token": other}
    )
    assert r.status_code == 403, r.text
    assert await row_counts(clean_engine) == before
    assert not await _paused(clean_engine, coach_id)


async def test_own_page_with_the_token_may_write(
    app_client: Client, tokens: Tokens, coach_id: int, clean_engine: AsyncEngine
) -> None:
    csrf = await _sign_in(app_client, tokens.token("admin"))
    url = f"/v1/admin/coaches/{coach_id}/payouts/pause"
    r = await app_client.post(
        url, json={"reason": "checks"}, headers={**SAME_ORIGIN, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 200, r.text
    assert await _paused(clean_engine, coach_id)
    # Referer stands in for a missing Origin.
    referer = {"Referer": "http://testserver.local/finance", "X-CSRF-Token": csrf}
    r = await app_client.post(f"/v1/admin/coaches/{coach_id}/payouts/resume", headers=referer)
    assert r.status_code == 200, r.text
    assert not await _paused(clean_engine, coach_id)
    # Reads are unaffected: no Origin, no token.
    r = await app_client.get(f"/v1/admin/coaches/{coach_id}")
    assert r.status_code == 200, r.text


async def test_bearer_requests_need_neither(
    app_client: Client, tokens: Tokens, coach_id: int, clean_engine: AsyncEngine
) -> None:
    """No other site can add an Authorization header, so API clients are unchanged, even
    with a (stale) session cookie beside it."""
    await _sign_in(app_client, tokens.token("finance"))
    url = f"/v1/admin/coaches/{coach_id}/payouts/pause"
    r = await app_client.post(url, json={"reason": "api"}, headers=tokens.headers("admin"))
    assert r.status_code == 200, r.text
    assert await _paused(clean_engine, coach_id)


async def test_sign_in_sets_a_csrf_cookie_bound_to_the_session(
    app_client: Client, tokens: Tokens, api_settings: Settings
) -> None:
    token = tokens.token("finance")
    r = await app_client.post("/auth/session", json={"token": token}, headers=SAME_ORIGIN)
    assert r.status_code == 200, r.text
    cookies = SimpleCookie()
    for header in r.headers.get_list("set-cookie"):
        cookies.load(header)
    session, csrf = cookies[SESSION_COOKIE], cookies[CSRF_COOKIE]
    assert session.value == token and session["httponly"]
    assert csrf.value == csrf_token(api_settings, token)
    assert not csrf["httponly"]  # page scripts read it
    assert csrf["samesite"].lower() == "strict" and csrf["path"] == "/"
    assert not csrf["secure"]  # http public URL here; see the next test
    assert csrf_token(api_settings, token) != csrf_token(api_settings, tokens.token("admin"))
    out = await app_client.post("/auth/logout", headers=SAME_ORIGIN)
    cleared = SimpleCookie()
    for header in out.headers.get_list("set-cookie"):
        cleared.load(header)
    assert cleared[SESSION_COOKIE].value == "" and cleared[CSRF_COOKIE].value == ""


def test_cookies_are_secure_behind_https(api_settings: Settings) -> None:
    from api.routes.auth import _cookies

    class Ctx:
        settings = api_settings.model_copy(update={"public_url": "https://pay.example"})

    for cookie in _cookies(Ctx(), "tok", 60):  # type: ignore[arg-type]
        assert cookie.secure, cookie.key


async def test_login_csrf_is_refused(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    """A cross-site form must not sign the victim into the attacker's account."""
    attacker = tokens.token("coach", "coach-attacker")
    before = await row_counts(clean_engine)
    for headers in (
        {"Origin": EVIL},
        {"Referer": f"{EVIL}/x"},
        {},  # neither: a form post from a browser always has one
        {"Origin": "null"},
    ):
        r = await app_client.post(
            "/auth/session",
            data={"token": attacker, "next": "/coach"},
            headers=headers,
            follow_redirects=False,
        )
        assert r.status_code == 403, (headers, r.text)
        assert "set-cookie" not in r.headers
        out = await app_client.post("/auth/logout", data={}, headers=headers)
        assert out.status_code == 403, (headers, out.text)
    assert await row_counts(clean_engine) == before
