"""Declare our real error responses, and the bodies read by hand, in the OpenAPI document.

Litestar declares only its own 400 (``{status_code, detail, extra}``) for
validation errors, but every error this API answers is
``{"error": "<Name>", "detail": "..."}`` with 400/401/403/404/409/413/415/422/503
(api/errors.py). Litestar has no app- or router-wide ``responses``, so the
document is amended once, after Litestar built it, for every ``/v1`` and
``/auth`` operation: clients and schemathesis then check the real shape.

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
from litestar.openapi.spec import OpenAPI, OpenAPIResponse, Reference, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.openapi.spec.media_type import OpenAPIMediaType

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
    "503": "Stripe's answer is unknown (retry later) or the database is down",
}
PREFIXES = ("/v1/", "/auth/")
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


def amend(openapi: OpenAPI, bodies: Bodies | None = None) -> OpenAPI:
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas[ERROR_SCHEMA] = _error_schema()
    ref = Reference(ref=f"#/components/schemas/{ERROR_SCHEMA}")
    for path, item in (openapi.paths or {}).items():
        if not path.startswith(PREFIXES):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            operation: Any = getattr(item, method, None)
            if operation is None:
                continue
            responses = dict(operation.responses or {})
            for code, why in ERRORS.items():
                responses[code] = OpenAPIResponse(
                    description=why,
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
