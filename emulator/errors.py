"""Errors raised by handlers, rendered as Stripe error bodies (or control-API bodies)."""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://stripe.com/docs/error-codes"

# Codes Stripe raises while validating parameters, before the endpoint starts executing: Stripe does
# not store an idempotent result for them, so a retry with the same key runs again.
VALIDATION_CODES = frozenset(
    {
        "parameter_missing",
        "parameter_unknown",
        "parameter_invalid_integer",
        "parameter_invalid_empty",
        "parameter_invalid_string_empty",
        "parameter_invalid",
        "resource_missing",
        "url_invalid",
    }
)


class StripeError(Exception):
    """A Stripe-shaped API error: HTTP status plus the `error` object."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param

    @property
    def is_validation(self) -> bool:
        return self.code in VALIDATION_CODES

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{DOC_BASE}#{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def not_found(kind: str, obj_id: str, param: str = "id") -> StripeError:
    return StripeError(
        f"No such {kind}: '{obj_id}'", status=404, code="resource_missing", param=param
    )


class ControlError(Exception):
    """An error of the emulator's own control API (JSON, not Stripe-shaped)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": {"type": "emulator_error", "message": self.message}}
