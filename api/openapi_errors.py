"""The OpenAPI document at ``/schema``: its config (Swagger UI served from the
``swagger-ui-bundle`` package, no CDN; the bearer scheme, so "Authorize" and "Try it
out" work), and the amendments Litestar cannot make itself.

Litestar declares only its own 400 (``{status_code, detail, extra}``) for
validation errors, but every error this API answers is
``{"error": "<Name>", "detail": "..."}`` (api/errors.py). Litestar has no app- or
router-wide ``responses``, so the document is amended once, after Litestar built
it: each operation gets its summary and the errors it can really return
(api/openapi_routes.py), and the routes that need no bearer token say so.

Handlers that decode their JSON body strictly from the raw request (to name
the bad field in a 422, or to accept an empty body) give Litestar no body type
to document; they name it in ``opt={REQUEST_BODY: <msgspec Struct>}`` and it
is declared here, from the same type the handler decodes with.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIResponse,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.openapi.spec.media_type import OpenAPIMediaType

from api.openapi_routes import ROUTE_DOCS
from api.security import SchemaPage

ERROR_SCHEMA = "Error"
ERRORS = {
    "400": "Malformed request or webhook signature (error names the cause)",
    "401": "Missing, malformed, expired or unknown-role bearer token",
    "403": "Another role's route or another user's data, or a cookie-authenticated write "
    "from another origin or without X-CSRF-Token",
    "404": "No such object (or not yours to see)",
    "409": "The current state does not allow it",
    "413": "Body larger than the route accepts",
    "415": "Body not of the route's type (application/json; the sign-in forms also take forms)",
    "422": "Invalid input; detail names the field",
    "502": "Stripe refused the request; detail gives Stripe's reason",
    "503": "Stripe's answer is unknown (retry later) or the database is down",
}
BEARER = "bearer"
SWAGGER_ASSETS = "/static/swagger-ui"  # api/routes/pages.py serves the package's files there
REQUEST_BODY = "request_body"  # handler opt key: the msgspec Struct its body decodes to
_PATH_PARAM = re.compile(r"\{(\w+):[^}]+\}")
Bodies = dict[tuple[str, str], type]  # (method, OpenAPI path) -> Struct


def _error_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["error", "detail"],
        properties={
            "error": Schema(type=OpenAPIType.STRING, description="the condition's name"),
            "detail": Schema(type=OpenAPIType.STRING),
        },
    )


def request_bodies(app: Litestar) -> Bodies:
    """The bodies handlers declared with ``opt={REQUEST_BODY: Struct}``."""
    out: Bodies = {}
    for route in app.routes:
        path = _PATH_PARAM.sub(r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", ()):
            body = handler.opt.get(REQUEST_BODY)
            if body is not None:
                out.update({(m.lower(), path): body for m in handler.http_methods})
    return out


def _declare_bodies(openapi: OpenAPI, bodies: Bodies) -> None:
    types = sorted(set(bodies.values()), key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    schemas: dict[str, Any] = openapi.components.schemas or {}
    openapi.components.schemas = schemas
    # JSON Schema as msgspec writes it: Litestar serialises plain dicts as they are.
    schemas.update(components)
    by_type: dict[type, Any] = dict(zip(types, refs, strict=True))
    for (method, path), body in bodies.items():
        operation: Any = getattr((openapi.paths or {}).get(path), method, None)
        if operation is not None:
            operation.request_body = RequestBody(
                # Optional: an empty body means {} on every such route.
                required=False,
                content={"application/json": OpenAPIMediaType(schema=by_type[body])},
            )


TAGS = (
    ("/v1/coaches/", "coaches"), ("/v1/admin/", "admin"), ("/v1/sessions", "sessions"),
    ("/v1/bookings", "bookings"), ("/v1/finance/", "finance"), ("/v1/webhooks/", "stripe"),
    ("/auth/", "sign-in"), ("/health", "health"),
)  # fmt: skip


def _tag(path: str) -> str:
    return next((tag for prefix, tag in TAGS if path.startswith(prefix)), "other")


def openapi_config() -> OpenAPIConfig:
    swagger = SchemaPage(
        js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
    )
    scheme = SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A token from `coachpay token --sub ID --role ROLE` (or `coachpay demo`).",
    )
    return OpenAPIConfig(
        title="coachpay",
        version="0.1.0",
        description="Marketplace payout engine on Stripe Connect. Amounts are integers in "
        "the currency's minor units (cents; yen have none). Errors are "
        '`{"error": "<Name>", "detail": "..."}`.',
        path="/schema",
        render_plugins=[swagger],
        components=Components(security_schemes={BEARER: scheme}),
        security=[{BEARER: []}],
        use_handler_docstrings=False,  # they are written for us, not for API clients
    )


def amend(openapi: OpenAPI, bodies: Bodies | None = None) -> OpenAPI:
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas[ERROR_SCHEMA] = _error_schema()
    ref = Reference(ref=f"#/components/schemas/{ERROR_SCHEMA}")
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation: Any = getattr(item, method, None)
            if operation is None:
                continue
            doc = ROUTE_DOCS.get((method.upper(), path))
            if doc is None:
                continue  # every served route has one: tests/api/test_openapi.py
            operation.summary = doc.summary
            operation.description = doc.description
            operation.tags = [_tag(path)]
            if doc.public:
                operation.security = []  # no bearer token: a signature or a link token
            responses = dict(operation.responses or {})
            responses.pop("400", None)  # Litestar's own shape; ours below when real
            for code in sorted(doc.errors):
                responses[code] = OpenAPIResponse(
                    description=ERRORS[code],
                    content={"application/json": OpenAPIMediaType(schema=ref)},
                )
            operation.responses = responses
    _declare_bodies(openapi, bodies or {})
    return openapi


class _AmendedOpenAPIPlugin(OpenAPIPlugin):
    __slots__ = ()

    def _build_openapi(self) -> OpenAPI:
        return amend(super()._build_openapi(), request_bodies(self.app))


def declare_error_responses(app: Litestar) -> None:
    """Make the app's OpenAPI plugin amend the document it builds."""
    plugin = app.plugins.get(OpenAPIPlugin)
    # Litestar builds its plugin itself; the subclass adds one step and no state.
    plugin.__class__ = _AmendedOpenAPIPlugin
