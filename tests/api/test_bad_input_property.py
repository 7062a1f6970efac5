"""Bad input is a 4xx, always, and writes nothing: hypothesis against every write route.

The routes come from the app's route table (tests/api/perimeter_support.py), so a
new route is covered without touching this file; the two Stripe webhook
endpoints are attacked too. Each example checks the answer (no 5xx, the error
shape) and the row count of every table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import SESSION_COOKIE
from core.stripe_webhooks import sign_payload
from tests.api.conftest import CONNECT_SECRET, PLATFORM_SECRET, SAME_ORIGIN, TEST_JWT_SECRET, Tokens
from tests.api.perimeter_support import WEBHOOK_PATHS, row_counts, write_routes

Client = AsyncTestClient[Litestar]
CSRF_HEADER = "X-CSRF-Token"
DEV_JWT_SECRET = "coachpay-dev-secret-change-me-0123456789"  # shipped in the source
ROLES = ("mentee", "coach", "finance", "admin")
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _signed(claims: dict[str, Any], *, key: str = TEST_JWT_SECRET, **kw: Any) -> str:
    return jwt.encode(claims, key, **{"algorithm": "HS256", **kw})


def _raw_hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A token PyJWT would not make (an empty key)."""

    def part(value: object) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing_input = part(header) + b"." + part(claims)
    mac = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def _quiet_hs512(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT: the key is short for SHA-512
        return _signed(claims, algorithm="HS512")


def hostile_tokens() -> list[str]:
    """Tokens an attacker (or a bug) could present; the ones signed with our key test
    that a signature is not a licence to crash the claim checks."""
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    base = {"sub": "x", "role": "admin", "exp": exp}
    claims = [
        {**base, "role": ["admin"]},
        {**base, "role": {"admin": 1}},
        {**base, "role": 1},
        {**base, "role": "root"},
        {**base, "sub": ["x"]},
        {**base, "sub": {"a": 1}},
        {**base, "sub": "x" * 5000},
        {**base, "sub": "a\x00b"},
        {**base, "sub": ""},
        {**base, "exp": 10**400},
        {**base, "exp": "9999999999"},
        {**base, "exp": [exp]},
        {**base, "exp": True},
        {**base, "email": ["a@b"], "iat": "x"},
        {**base, "nbf": exp * 10},
        {"sub": "x", "role": "admin"},  # no exp
    ]
    tokens = [_signed(c) for c in claims]
    tokens += [
        jwt.encode(base, None, algorithm="none"),  # alg none
        _quiet_hs512(base),  # the right key, another algorithm
        # kid pointing at a file of known content, signed with that content: we
        # never look keys up by kid.
        _raw_hs256({"alg": "HS256", "kid": "../../../../dev/null"}, base, b""),
        _signed(
            base,
            key="attacker-key-0123456789-0123456789",
            headers={"kid": "' OR 1=1 --", "jku": "https://evil.example"},
        ),
        _signed(base, key="wrong-key-0123456789-0123456789-01"),
        _signed(base, key=DEV_JWT_SECRET),  # the built-in development secret
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "a.b.c",
        "\u00ff\u00fe.\u00fd",
        "x" * 5000,
    ]
    return tokens


HOSTILE_TOKENS = hostile_tokens()
header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/xml",
            "",
            ";",
            "application/json, text/plain",
        ]
    ),
    header_text,
)
authorizations = st.one_of(
    st.none(),
    st.sampled_from([f"Bearer {t}" for t in HOSTILE_TOKENS]),
    st.sampled_from(["Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "bearer  x", "Token abc"]),
    header_text.map(lambda t: f"Bearer {t}"),
    header_text,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
field_names = st.sampled_from(
    [b"title", b"token", b"reason", b"country", b"amount", b"currency", b"next", b"hold_hours"]
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    # Invalid UTF-8 inside a JSON string: msgspec checks it there, with the codec's error.
    st.builds(lambda k, b: b'{"' + k + b'": "' + b + b'"}', field_names, st.binary(max_size=12)),
    st.builds(lambda k, b: k + b"=" + b, field_names, st.binary(max_size=12)),  # form-ish
    st.builds(
        lambda b: (
            b'--xyz\r\nContent-Disposition: form-data; name="token"\r\n\r\n'
            + b
            + b"\r\n--xyz--\r\n"
        ),
        st.binary(max_size=20),
    ),
)


def _could_be_valid(body: bytes) -> bool:
    """A body some route might accept with valid credentials (empty, or a JSON object of
    known fields): left out where the credentials are valid, so nothing may be written."""
    if not body.strip():
        return True
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict)


def _latin1(headers: dict[str, str]) -> dict[str, bytes]:
    # httpx sends str header values as ASCII; any byte a client can send is fair game.
    return {k: v.encode("latin-1") for k, v in headers.items()}


def _assert_clean_refusal(status: int, text: str, what: object) -> None:
    assert status < 500, (what, status, text)
    if status >= 400 and text.lstrip().startswith("<"):
        # A sign-in form refused gets the form again with the reason (api/routes/pages.py).
        assert status == 401 and 'name="token"' in text, (what, status, text)
    elif status >= 400:
        body = json.loads(text)
        assert isinstance(body, dict) and {"error", "detail"} <= set(body), (what, text)


async def _provisioned(client: Client, tokens: Tokens, engine: AsyncEngine) -> dict[str, int]:
    """Users exist before the baseline: their first sight is a write of its own."""
    for role in ROLES:
        assert (await client.get("/v1/sessions", headers=tokens.headers(role))).status_code == 200
    return await row_counts(engine)


@PROPERTY
@given(
    data=st.data(),
    body=bodies,
    content_type=content_types,
    authorization=authorizations,
    cookie=st.one_of(st.none(), st.sampled_from(["valid", *HOSTILE_TOKENS[:6]]), header_text),
    origin=st.sampled_from([None, "same", "https://evil.example", "null", "garbage"]),
    csrf=st.one_of(st.none(), header_text),
)
async def test_hostile_credentials_and_bodies_on_every_write_route(
    app_client: Client,
    tokens: Tokens,
    clean_engine: AsyncEngine,
    data: st.DataObject,
    body: bytes,
    content_type: str | None,
    authorization: str | None,
    cookie: str | None,
    origin: str | None,
    csrf: str | None,
) -> None:
    """No valid credentials at all (a valid cookie never comes with its CSRF token): every
    answer is a clear 4xx (or the sign-out 200) and no table gains or loses a row."""
    if not hasattr(app_client, "_baseline"):
        app_client._baseline = await _provisioned(app_client, tokens, clean_engine)  # type: ignore[attr-defined]
    route = data.draw(st.sampled_from(write_routes(app_client.app)), label="route")
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if authorization is not None:
        headers["Authorization"] = authorization
    if origin is not None:
        headers["Origin"] = SAME_ORIGIN["Origin"] if origin == "same" else origin
    if csrf is not None:
        headers[CSRF_HEADER] = csrf
    if cookie is not None:
        value = tokens.token("admin") if cookie == "valid" else cookie
        headers["Cookie"] = f"{SESSION_COOKIE}={value}"
    r = await app_client.request(route.method, route.path, content=body, headers=_latin1(headers))
    _assert_clean_refusal(r.status_code, r.text, (str(route), headers, cookie, body))
    if r.status_code < 400:
        assert route.path == "/auth/logout", (str(route), r.status_code, r.text)
    assert await row_counts(clean_engine) == app_client._baseline  # type: ignore[attr-defined]


@PROPERTY
@given(data=st.data(), body=bodies, content_type=content_types, role=st.sampled_from(ROLES))
async def test_valid_tokens_with_bad_bodies_on_every_write_route(
    app_client: Client,
    tokens: Tokens,
    clean_engine: AsyncEngine,
    data: st.DataObject,
    body: bytes,
    content_type: str | None,
    role: str,
) -> None:
    assume(not _could_be_valid(body))
    if not hasattr(app_client, "_baseline"):
        app_client._baseline = await _provisioned(app_client, tokens, clean_engine)  # type: ignore[attr-defined]
    route = data.draw(st.sampled_from(write_routes(app_client.app)), label="route")
    headers = {**tokens.headers(role), **SAME_ORIGIN}
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await app_client.request(route.method, route.path, content=body, headers=_latin1(headers))
    _assert_clean_refusal(r.status_code, r.text, (str(route), role, content_type, body))
    if r.status_code < 400:
        assert route.path == "/auth/logout", (str(route), r.status_code, r.text)
    assert await row_counts(clean_engine) == app_client._baseline  # type: ignore[attr-defined]


@settings(PROPERTY, max_examples=80)
@given(
    path=st.sampled_from([*WEBHOOK_PATHS, *(p + "/" for p in WEBHOOK_PATHS)]),
    body=bodies,
    content_type=content_types,
    signature=st.one_of(
        st.none(),
        st.just("signed"),
        header_text,
        st.sampled_from(["t=1,v1=00", "t=,v1=", "v1=" + "a" * 64, "t=99999999999999999999,v1=x"]),
    ),
    authorization=authorizations,
)
async def test_webhook_endpoints_refuse_hostile_deliveries(
    app_client: Client,
    clean_engine: AsyncEngine,
    path: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
    authorization: str | None,
) -> None:
    """Unsigned, badly signed, or correctly signed bytes that are no Stripe event: 4xx and
    nothing stored, on the fast path and the Litestar route alike."""
    if not hasattr(app_client, "_baseline"):
        app_client._baseline = await row_counts(clean_engine)  # type: ignore[attr-defined]
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if authorization is not None:
        headers["Authorization"] = authorization
    if signature == "signed":
        secret = CONNECT_SECRET if "connect" in path else PLATFORM_SECRET
        headers["Stripe-Signature"] = sign_payload(body, secret, None)
    elif signature is not None:
        headers["Stripe-Signature"] = signature
    r = await app_client.post(path, content=body, headers=_latin1(headers))
    _assert_clean_refusal(r.status_code, r.text, (path, headers, body))
    assert r.status_code >= 400, (path, body, r.text)
    assert await row_counts(clean_engine) == app_client._baseline  # type: ignore[attr-defined]
