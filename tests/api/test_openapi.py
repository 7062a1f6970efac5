"""What ``/schema`` tells an API client: served without a CDN, the bearer scheme for
"Authorize", one summary per route, no handler docstrings, and the errors each route
can really answer (api/openapi_routes.py)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.openapi_routes import ROUTE_DOCS
from core.settings import load_settings
from tests.api.conftest import TEST_JWT_SECRET

Client = AsyncTestClient[Litestar]
METHODS = ("get", "post", "put", "patch", "delete")


def _schema() -> dict[str, Any]:
    app = create_app(
        load_settings(
            database_url="postgresql://collect.invalid/none",
            stripe_secret_key="sk_test_collect",
            jwt_secret=TEST_JWT_SECRET,
        )
    )
    found: dict[str, Any] = app.openapi_schema.to_schema()
    return found


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m.upper(), path): op
        for path, item in spec["paths"].items()
        for m, op in item.items()
        if m in METHODS
    }


def test_every_route_has_one_public_summary_and_its_real_errors() -> None:
    spec = _schema()
    ops = _operations(spec)
    assert set(ops) == set(ROUTE_DOCS), "api/openapi_routes.py and the served routes differ"
    summaries = [op["summary"] for op in ops.values()]
    assert len(set(summaries)) == len(summaries)  # one each, none shared
    for key, op in ops.items():
        doc = ROUTE_DOCS[key]
        assert op["summary"] == doc.summary
        errors = {code for code in op["responses"] if code >= "400"}
        assert errors == doc.errors, key
        for code in errors:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error"
        # Internal notes (the plain pool, the advisory locks...) stay in the code.
        for word in ("rawpool", "plain pool", "advisory", "SKIP LOCKED", "round trip"):
            assert word not in (op.get("description") or ""), key
    # A few the code makes plain: no path id, no 404; a Stripe call, 502/503.
    assert "404" not in ops[("GET", "/v1/coaches/me/balance")]["responses"]
    assert {"502", "503"} <= set(ops[("POST", "/v1/sessions/{session_id}/bookings")]["responses"])
    assert "403" not in ops[("GET", "/v1/sessions")]["responses"]  # any role may list


def test_the_bearer_scheme_is_declared_and_public_routes_need_none() -> None:
    spec = _schema()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert spec["security"] == [{"bearer": []}]
    ops = _operations(spec)
    for key, doc in ROUTE_DOCS.items():
        if doc.public:
            assert ops[key]["security"] == [], key
        else:
            assert "security" not in ops[key], key  # the document's default: the bearer
    assert ops[("POST", "/v1/webhooks/stripe")]["security"] == []


async def test_swagger_ui_comes_from_the_app_not_a_cdn(app_client: Client) -> None:
    page = await app_client.get("/schema")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page.text)
    assert assets and all(a.startswith("/static/swagger-ui/") for a in assets), assets
    for asset in assets:
        r = await app_client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert "https://" not in page.text.split("<body>")[0]
    js = await app_client.get("/static/app.js")
    assert js.status_code == 200 and "X-CSRF-Token" in js.text
