"""The role matrix: every route x (no token, mentee, coach, finance, admin) x own / other's
object. A forbidden cell answers 401 (no token) or 403/404 with ``{"error", "detail"}`` and
writes nothing (row counts of every table, ledger balances, Stripe writes unchanged); an
allowed cell is never 401/403 (nor 5xx).

``TABLE`` is the expected access of every route the app serves (except /schema*, /health*,
static assets and the Stripe webhooks, which answer to signatures: see the webhook test). A
route added without a row here fails ``test_table_covers_every_route``.

One app and one seeded world for the module (tests/system/conftest.py); the forbidden cells
run first, so each sees the world as seeded, then the allowed ones (which may change it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from core.stripe_webhooks import sign_payload
from tests.api.conftest import TEST_JWT_SECRET
from tests.system.conftest import BASE_URL, Party, World, snapshot

M, C, F, A = "mentee", "coach", "finance", "admin"
EVERYONE = frozenset({M, C, F, A})
ROLES: tuple[str | None, ...] = (None, M, C, F, A)
WEBHOOKS = frozenset({"POST /v1/webhooks/stripe", "POST /v1/webhooks/stripe/connect"})


@dataclass(frozen=True)
class Rule:
    """Who may call a route, and on whose data.

    ``roles``: allowed roles (on their own object when the route has one). ``obj``: the seeded
    object in the path ("booking:paid", "session:spare", "coach") or "link" (authorised by the
    signed onboarding link in the query, not by the bearer token). ``owner_only``: of
    ``roles``, those allowed only on their own object (scoped to the caller). ``me``: no object
    in the path, the route serves the caller's own data. ``anonymous``: allowed without a token.
    ``page``: an HTML page (cookie or bearer auth): forbidden is a 403 page (a 404 page for a
    page of one object), and no token a 303 to the sign-in form, instead of the API's JSON
    401/403.
    """

    roles: frozenset[str]
    obj: str | None = None
    owner_only: frozenset[str] = frozenset()
    me: bool = False
    anonymous: bool = False
    body: str | None = None
    page: bool = False

    def variants(self) -> tuple[str, ...]:
        if self.obj == "link":
            return ("own", "other", "forged", "missing")
        return ("own", "other") if self.obj else ("-",)

    def allows(self, role: str | None, variant: str) -> bool:
        if self.obj == "link":  # whoever holds a valid link, whatever their bearer token
            return variant in ("own", "other")
        if role is None:
            return self.anonymous
        if role not in self.roles:
            return False
        return not (variant == "other" and role in self.owner_only)


def rule(*roles: str, **kw: Any) -> Rule:
    return Rule(roles=frozenset(roles), **kw)


TABLE: dict[str, Rule] = {
    "GET /": rule(M, C, F, A, anonymous=True, page=True),  # the sign-in form
    "GET /finance": rule(F, A, page=True),
    "GET /admin": rule(A, page=True),
    # A coach sees their own page whatever coach_id says (test_coach_page_is_the_callers_own).
    "GET /coach": rule(C, F, A, page=True),
    "GET /sessions": rule(M, C, F, A, page=True),  # only a mentee gets "Book" buttons
    "GET /bookings": rule(M, page=True),
    # Another mentee's booking, or a coach asking, is a 404 page (ids reveal nothing).
    "GET /bookings/{booking_id}": rule(
        M, F, A, obj="booking:paid", owner_only=frozenset({M}), page=True
    ),
    "POST /auth/session": rule(M, C, F, A, body="sign_in"),  # the token travels in the body
    "POST /auth/logout": rule(M, C, F, A, anonymous=True),
    "POST /v1/coaches/me/onboarding": rule(C, me=True, body="empty"),
    "GET /v1/coaches/me/onboarding/refresh": rule(M, C, F, A, obj="link", anonymous=True),
    "GET /v1/coaches/me/onboarding/return": rule(M, C, F, A, obj="link", anonymous=True),
    "GET /v1/coaches/me/account": rule(C, me=True),
    "GET /v1/coaches/me/balance": rule(C, me=True),
    "GET /v1/coaches/me/earnings": rule(C, me=True),
    "GET /v1/coaches/me/payouts": rule(C, me=True),
    "GET /v1/admin/coaches/{coach_id}": rule(A, obj="coach"),
    "PATCH /v1/admin/coaches/{coach_id}": rule(A, obj="coach", body="profile"),
    "POST /v1/admin/coaches/{coach_id}/payouts/pause": rule(A, obj="coach", body="reason"),
    "POST /v1/admin/coaches/{coach_id}/payouts/resume": rule(A, obj="coach", body="reason"),
    "POST /v1/admin/payouts/{payout_id}/retry": rule(A, obj="payout"),
    "GET /v1/admin/webhooks/failed": rule(A),
    # No parked event in the seeded world: the admin's cells answer 404, nobody else's 2xx.
    "POST /v1/admin/webhooks/{event_id}/replay": rule(A, obj="event"),
    "POST /v1/sessions": rule(C, me=True, body="session"),
    "GET /v1/sessions": rule(M, C, F, A),
    "GET /v1/sessions/{session_id}": rule(M, C, F, A, obj="session:paid"),
    "POST /v1/sessions/{session_id}/bookings": rule(M, obj="session:spare"),
    "POST /v1/sessions/{session_id}/cancel": rule(
        C, A, obj="session:spare", owner_only=frozenset({C}), body="empty"
    ),
    "GET /v1/bookings": rule(M, me=True),
    "POST /v1/bookings/{booking_id}/cancel": rule(
        M, A, obj="booking:pending", owner_only=frozenset({M})
    ),
    "POST /v1/bookings/{booking_id}/retry": rule(
        M, obj="booking:failed", owner_only=frozenset({M})
    ),
    "POST /v1/bookings/{booking_id}/refund": rule(
        M, C, A, obj="booking:paid", owner_only=frozenset({M, C}), body="refund"
    ),
    # The objects outgoing events link to: the booking's mentee, its session's coach
    # (without the fee: test_one_booking_hides_the_fee_from_its_coach), finance, admin.
    "GET /v1/bookings/{booking_id}": rule(
        M, C, F, A, obj="booking:paid", owner_only=frozenset({M, C})
    ),
    "GET /v1/payouts/{payout_id}": rule(C, F, A, obj="payout", owner_only=frozenset({C})),
    "GET /v1/bookings/{booking_id}/history": rule(
        M, F, A, obj="booking:paid", owner_only=frozenset({M})
    ),
    "GET /v1/finance/summary": rule(F, A),
    "GET /v1/finance/transactions": rule(F, A),
    "GET /v1/finance/payouts": rule(F, A),
    "GET /v1/finance/trial-balance": rule(F, A),
    "GET /v1/finance/reconciliation": rule(F, A),
    "GET /v1/finance/refunds/attention": rule(F, A),
    # Or the COACHPAY_METRICS_TOKEN (tests/api/test_observability.py).
    "GET /metrics": rule(A),
    # Outgoing events and webhook endpoints: admins only ("missing": an id nothing has,
    # so an admin's call is a 404 or a 422 and the world stays as seeded).
    "GET /v1/admin/events": rule(A),
    "GET /v1/admin/events/types": rule(A),
    "GET /v1/admin/events/health": rule(A),
    "GET /v1/admin/events/{event_id}": rule(A, obj="missing"),
    "GET /v1/admin/events/endpoints": rule(A),
    "POST /v1/admin/events/endpoints": rule(A, body="empty"),
    "GET /v1/admin/events/endpoints/{endpoint_id}": rule(A, obj="missing"),
    "PATCH /v1/admin/events/endpoints/{endpoint_id}": rule(A, obj="missing", body="empty"),
    "POST /v1/admin/events/endpoints/{endpoint_id}/rotate-secret": rule(
        A, obj="missing", body="empty"
    ),
    "GET /v1/admin/events/endpoints/{endpoint_id}/attempts": rule(A, obj="missing"),
    "POST /v1/admin/events/endpoints/{endpoint_id}/replay": rule(A, obj="missing", body="empty"),
    # Server-to-server API keys: admins only.
    "POST /v1/admin/api-keys": rule(A, body="api_key"),
    "GET /v1/admin/api-keys": rule(A),
    "DELETE /v1/admin/api-keys/{key_id}": rule(A, obj="missing"),
    # A user's role (fixed at first sight otherwise): admins only; user 0 does not exist.
    "PATCH /v1/admin/users/{user_id}": rule(A, obj="missing", body="role"),
}


def served_routes(app: Litestar) -> set[str]:
    """``"METHOD /path/{param}"`` for every route the app serves, bar the excluded ones."""
    out = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):  # ASGI mounts (static assets)
            continue
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        if path in ("/health", "/health/ready") or path.startswith(("/schema", "/static")):
            continue
        for handler in route.route_handlers:
            if handler.handler_name == "options_handler":  # Litestar's automatic OPTIONS
                continue
            out.update(f"{method} {path}" for method in handler.http_methods)
    return out


def _cells() -> list[Any]:
    cells = []
    for key, r in TABLE.items():
        for role in ROLES:
            for variant in r.variants():
                ok = r.allows(role, variant)
                label = f"{key} {role or 'anonymous'} {variant} {'ok' if ok else 'forbidden'}"
                cells.append(pytest.param(key, role, variant, ok, id=label))
    # Forbidden first: each must meet the world as seeded, before allowed calls change it.
    return sorted(cells, key=lambda p: p.values[3])


def _party(world: World, variant: str) -> Party:
    return world.b if variant == "other" else world.a


def _url(world: World, key: str, r: Rule, variant: str) -> str:
    path = key.split(" ", 1)[1]
    if r.obj == "link":
        token = {
            "own": world.a.link_token,
            "other": world.b.link_token,
            # B's coach id under A's signature: a link must not be re-pointed at someone else.
            "forged": f"{world.b.coach_id}." + world.a.link_token.split(".", 1)[1],
            "missing": None,
        }[variant]
        return path if token is None else f"{path}?token={token}"
    if r.obj is None:
        return path
    party = _party(world, variant)
    kind, _, name = r.obj.partition(":")
    ident = {
        "coach": lambda: party.coach_id,
        "session": lambda: party.sessions[name],
        "booking": lambda: party.bookings[name],
        "payout": lambda: party.payout_ids[0],
        "event": lambda: f"evt_role_matrix_{variant}",
        "missing": lambda: 0,
    }[kind]()
    return re.sub(r"\{\w+\}", str(ident), path)


def _body(world: World, name: str | None, role: str | None) -> Any:
    if name is None:
        return None
    start = world.clock.now() + timedelta(days=4)
    return {
        "sign_in": {"token": world.tokens.token(role, f"{role}-a")} if role else {},
        "empty": {},
        "profile": {"hold_hours": 48},
        "session": {
            "title": "Matrix session",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "price": 5000,
            "currency": "usd",
        },
        "refund": {"amount": 100},
        "reason": {"reason": "role matrix"},
        "api_key": {"name": "role matrix", "roles": ["mentee"]},
        "role": {"role": "coach"},
    }[name]


async def _call(world: World, key: str, role: str | None, variant: str) -> Any:
    r = TABLE[key]
    method = key.split(" ", 1)[0]
    headers = world.headers(role)
    if method == "GET" and not r.page:
        headers["Accept"] = "application/json"
    if key.startswith("POST /auth/"):
        headers["Origin"] = BASE_URL  # the sign-in forms take same-origin posts only
    body = _body(world, r.body, role)
    return await world.client.request(
        method,
        _url(world, key, r, variant),
        headers=headers,
        json=body,
        follow_redirects=False,
    )


async def test_table_covers_every_route(world: World) -> None:
    served = served_routes(world.client.app)
    assert served >= WEBHOOKS, "the webhook endpoints moved: update WEBHOOKS and their test"
    missing = sorted(served - WEBHOOKS - set(TABLE))
    stale = sorted(set(TABLE) - served)
    assert not missing, f"routes without a role-matrix entry: {missing}"
    assert not stale, f"role-matrix entries for routes the app no longer serves: {stale}"


def test_table_is_consistent() -> None:
    for key, r in TABLE.items():
        has_param = "{" in key
        assert has_param == (r.obj not in (None, "link")), key
        assert r.owner_only <= r.roles, key
        assert not (r.me and r.obj), key


@pytest.mark.parametrize(("key", "role", "variant", "allowed"), _cells())
async def test_cell(world: World, key: str, role: str | None, variant: str, allowed: bool) -> None:
    before = None if allowed else await snapshot(world)
    response = await _call(world, key, role, variant)
    status = response.status_code
    if allowed:
        assert status not in (401, 403), f"{key} as {role} ({variant}): {status} {response.text}"
        assert status < 500, f"{key} as {role} ({variant}): {status} {response.text}"
        return
    r = TABLE[key]
    if r.page:
        # A page of one object answers 404 for one not the viewer's to see.
        wanted = {303} if role is None else ({404} if r.obj else {403})
    else:
        wanted = {401} if role is None and r.obj != "link" else {403, 404}
    assert status in wanted, f"{key} as {role} ({variant}): {status} {response.text}"
    assert await snapshot(world) == before, f"{key} as {role} ({variant}) wrote something"
    if r.page:
        if role is None:
            assert response.headers["location"].startswith("/?next="), response.headers
        return
    body = response.json()
    assert {"error", "detail"} <= body.keys(), body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str), body


async def test_bookings_list_shows_only_the_callers_own(world: World) -> None:
    r = await world.client.get("/v1/bookings", headers=world.headers(M, "b"))
    assert r.status_code == 200, r.text
    seen = {b["id"] for part in ("upcoming", "past") for b in r.json()[part]}
    assert set(world.b.bookings.values()) <= seen
    assert not seen & set(world.a.bookings.values()), seen


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", sorted(p.split(" ", 1)[1] for p in WEBHOOKS))
async def test_webhooks_never_accept_a_bearer_token_alone(
    world: World, path: str, role: str | None
) -> None:
    """A well-formed event that would mark A's pending booking paid, sent with a bearer token
    (and with a signature made with the wrong secret): 400, nothing stored or done."""
    event = {
        "id": f"evt_matrix_{role}_{path.count('/')}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(world.clock.now().timestamp()),
        "livemode": False,
        "data": {
            "object": {
                "id": "cs_test_matrix",
                "object": "checkout.session",
                "payment_status": "paid",
                "metadata": {"booking_id": str(world.a.bookings["pending"])},
            }
        },
    }
    before = await snapshot(world)
    headers = {**world.headers(role), "Content-Type": "application/json"}
    r = await world.client.post(path, json=event, headers=headers)
    assert r.status_code == 400, r.text
    assert {"error", "detail"} <= r.json().keys()
    raw = r.request.content
    headers["Stripe-Signature"] = sign_payload(raw, TEST_JWT_SECRET, None)
    r = await world.client.post(path, content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert await snapshot(world) == before


async def test_coach_money_shows_only_the_callers_own(world: World) -> None:
    headers = world.headers(C, "b")
    r = await world.client.get("/v1/coaches/me/payouts", headers=headers)
    assert r.status_code == 200, r.text
    assert {p["id"] for p in r.json()["data"]} == set(world.b.payout_ids)
    r = await world.client.get("/v1/coaches/me/earnings", headers=headers)
    assert r.status_code == 200, r.text
    booked = {e["booking_id"] for e in r.json()["data"]}
    assert booked == {world.b.bookings["paid"]}, booked
    r = await world.client.get("/v1/coaches/me/balance", headers=headers)
    assert r.status_code == 200 and r.json()["coach_id"] == world.b.coach_id, r.text


async def test_coach_page_is_the_callers_own(world: World) -> None:
    """A coach asking for another coach's page (``coach_id``) still gets their own."""
    url = f"/coach?coach_id={world.a.coach_id}"
    r = await world.client.get(url, headers=world.headers(C, "b"))
    assert r.status_code == 200, r.text
    assert "coach-b" in r.text and "coach-a" not in r.text
    r = await world.client.get(url, headers=world.headers(F))
    assert r.status_code == 200 and "coach-a" in r.text, r.text


async def test_one_booking_hides_the_fee_from_its_coach(world: World) -> None:
    booking = world.a.bookings["paid"]
    seen = {}
    for role in (M, C, F):
        r = await world.client.get(f"/v1/bookings/{booking}", headers=world.headers(role))
        assert r.status_code == 200, r.text
        seen[role] = r.json()
    assert seen[C]["fee"] is None
    fee = seen[M]["fee"]
    assert fee == seen[F]["fee"] and fee["platform_fee"] + fee["coach_share"] == seen[M]["amount"]
    assert seen[C]["amount"] == seen[M]["amount"] and seen[C]["mentee_id"] == seen[M]["mentee_id"]


async def test_one_payout_is_its_coachs(world: World) -> None:
    payout = world.a.payout_ids[0]
    r = await world.client.get(f"/v1/payouts/{payout}", headers=world.headers(C))
    assert r.status_code == 200 and r.json()["payout"]["id"] == payout, r.text
    assert r.json()["coach_id"] == world.a.coach_id
    other = await world.client.get(f"/v1/payouts/{payout}", headers=world.headers(C, "b"))
    assert other.status_code == 404 and other.json()["error"] == "PayoutNotFound"
