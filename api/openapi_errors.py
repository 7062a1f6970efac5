"""Declare our real error responses in the OpenAPI document.

Litestar declares only its own 400 (``{status_code, detail, extra}``) for
validation errors, but every error this API answers is
``{"error": "<Name>", "detail": "..."}`` with 400/401/403/404/409/413/422/503
(api/errors.py). Litestar has no app- or router-wide ``responses``, so the
document is amended once, after Litestar built it, for every ``/v1`` and
``/auth`` operation: clients and schemathesis then check the real shape.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import OpenAPI, OpenAPIResponse, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.openapi.spec.media_type import OpenAPIMediaType

ERROR_SCHEMA = "Error"
ERRORS = {
    "400": "Malformed request or webhook signature (error names the cause)",
    "401": "Missing, malformed, expired or unknown-role bearer token",
    "403": "Another role's route or another user's data",
    "404": "No such object (or not yours to see)",
    "409": "The current state does not allow it",
    "413": "Body larger than the route accepts",
    "422": "Invalid input; detail names the field",
    "503": "Stripe's answer is unknown (retry later) or the database is down",
}
PREFIXES = ("/v1/", "/auth/")


def _error_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["error", "detail"],
        properties={
            "error": Schema(type=OpenAPIType.STRING, description="the condition's name"),
            "detail": Schema(type=OpenAPIType.STRING),
        },
    )


def amend(openapi: OpenAPI) -> OpenAPI:
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
    return openapi


class _AmendedOpenAPIPlugin(OpenAPIPlugin):
    __slots__ = ()

    def _build_openapi(self) -> OpenAPI:
        return amend(super()._build_openapi())


def declare_error_responses(app: Litestar) -> None:
    """Make the app's OpenAPI plugin amend the document it builds."""
    plugin = app.plugins.get(OpenAPIPlugin)
    # Litestar builds its plugin itself; the subclass adds one step and no state.
    plugin.__class__ = _AmendedOpenAPIPlugin
