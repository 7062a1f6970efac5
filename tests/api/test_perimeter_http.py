"""Content types, the one JSON decoder, and the security headers (api/security.py)."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import SAME_ORIGIN, Tokens
from tests.api.perimeter_support import row_counts, write_routes

Client = AsyncTestClient[Litestar]
ROLES = ("mentee", "coach", "finance", "admin")
INVALID_UTF8 = b'{"title": "\xff\xfe", "token": "\xc3\x28", "reason": "\xed\xa0\x80", "amount": 1}'


async def _provision(client: Client, tokens: Tokens) -> None:
    for role in ROLES:
        r = await client.get("/v1/sessions", headers=tokens.headers(role))
        assert r.status_code == 200, r.text


async def test_bodies_of_other_types_are_415_on_every_write_route(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    """text/plain is how a cross-site form sends JSON without a preflight; every JSON
    route refuses it (and forms, and a body without a type) before anything runs."""
    await _provision(app_client, tokens)
    before = await row_counts(clean_engine)
    routes = write_routes(app_client.app)
    assert len(routes) >= 13
    for route in routes:
        bad_types = ["text/plain", "application/xml", "text/plain; charset=utf-8", "json"]
        if "application/x-www-form-urlencoded" not in route.body_types:
            bad_types += ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b"]
        for role in ROLES:
            for content_type in [*bad_types, None]:
                headers = {**tokens.headers(role), **SAME_ORIGIN}
                if content_type is not None:
                    headers["Content-Type"] = content_type
                r = await app_client.request(
                    route.method, route.path, content=b'{"reason": "x"}', headers=headers
                )
                assert r.status_code == 415, (str(route), role, content_type, r.text)
                assert r.json()["error"] == "UnsupportedMediaType"
    assert await row_counts(clean_engine) == before


async def test_json_with_a_charset_and_empty_bodies_pass_the_type_rule(
    app_client: Client, tokens: Tokens
) -> None:
    for route in write_routes(app_client.app):
        for headers in (
            {"Content-Type": "application/json; charset=utf-8"},
            {"Content-Type": "Application/JSON"},
            {},  # no body, no type: the routes that take none
        ):
            r = await app_client.request(
                route.method,
                route.path,
                content=b"[]" if headers else b"",
                headers={**tokens.headers("finance"), **SAME_ORIGIN, **headers},
            )
            assert r.status_code != 415 and r.status_code < 500, (str(route), headers, r.text)


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        (None, "POST", "/auth/session", 401),
        ("coach", "POST", "/v1/sessions", 422),
        ("mentee", "POST", "/v1/sessions/1/bookings", 422),
        ("coach", "POST", "/v1/sessions/1/cancel", 422),
        ("mentee", "POST", "/v1/bookings/1/refund", 422),
        ("coach", "POST", "/v1/coaches/me/onboarding", 422),
        ("admin", "PATCH", "/v1/admin/coaches/1", 422),
        ("admin", "POST", "/v1/admin/coaches/1/payouts/pause", 422),
    ],
)
async def test_invalid_utf8_inside_json_strings_is_a_4xx(
    shared_app_client: Client,
    tokens: Tokens,
    role: str | None,
    method: str,
    path: str,
    status: int,
) -> None:
    headers = {"Content-Type": "application/json", **SAME_ORIGIN}
    if role:
        headers.update(tokens.headers(role))
    for body in (INVALID_UTF8, b'"\xff"', b'{"\xff": 1}', b"\xef\xbb\xbf{}", b"\x00"):
        r = await shared_app_client.request(method, path, content=body, headers=headers)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"}


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def _assert_common(r: object) -> str:
    headers = r.headers  # type: ignore[attr-defined]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    return str(csp)


async def test_pages_run_only_their_own_nonce(
    app_client: Client, tokens: Tokens, api_settings: object
) -> None:
    for path in ("/", "/finance", "/coach", "/nowhere"):
        r = await app_client.get(path, headers=tokens.headers("finance"))
        csp = _assert_common(r)
        assert r.headers["cache-control"] == "no-store"
        if not r.headers["content-type"].startswith("text/html"):
            assert csp.startswith("default-src 'none'"), (path, csp)
            continue
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce, csp
        assert "'unsafe-inline'" not in csp.replace("style-src-attr 'unsafe-inline'", "")
        assert "script-src 'self' 'nonce-" in csp  # our own static files, or the nonce
        # No inline script or style without the nonce; scripts from our origin only.
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", r.text):
            own_file = re.search(r'src="/static/[^"]+"', tag) is not None
            assert own_file or f'nonce="{nonce.group(1)}"' in tag, (path, tag)
    one = (await app_client.get("/")).headers["content-security-policy"]
    two = (await app_client.get("/")).headers["content-security-policy"]
    assert one != two  # a nonce per response


async def test_finance_json_and_csv_are_never_stored(app_client: Client, tokens: Tokens) -> None:
    for accept in ("application/json", "text/csv"):
        r = await app_client.get(
            "/v1/finance/summary", headers={**tokens.headers("finance"), "Accept": accept}
        )
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        assert _assert_common(r).startswith("default-src 'none'")
    # Errors and the webhook fast path too.
    r = await app_client.get("/v1/finance/summary")
    assert r.status_code == 401 and r.headers["cache-control"] == "no-store"
    _assert_common(r)
    r = await app_client.post("/v1/webhooks/stripe", content=b"{}", headers={
        "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400
    _assert_common(r)


async def test_the_schema_page_keeps_working(app_client: Client) -> None:
    r = await app_client.get("/schema")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = _assert_common(r)
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce, csp
    assert "http" not in csp.replace("https:", "")  # Swagger UI's assets are our own
    assert "script-src 'self'" in csp
    scripts = re.findall(r"<script\b[^>]*>", r.text)
    assert scripts and all(f'nonce="{nonce.group(1)}"' in s for s in scripts), scripts
    assert "SwaggerUIBundle" in r.text
    spec = await app_client.get("/schema/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "coachpay"
    _assert_common(spec)


async def test_hostile_tokens_are_401_as_bearer_and_as_cookie(shared_app_client: Client) -> None:
    from tests.api.test_bad_input_property import HOSTILE_TOKENS

    for token in HOSTILE_TOKENS:
        raw = token.encode("latin-1", "replace")
        for headers in (
            {"Authorization": b"Bearer " + raw},
            {"Cookie": b"coachpay_session=" + raw},
        ):
            r = await shared_app_client.get("/v1/sessions", headers=headers)
            assert r.status_code == 401, (token[:80], r.status_code, r.text)
            assert r.json()["error"] == "AuthenticationFailed"
