"""Every error answered as ``{"error": "<Name>", "detail": "..."}`` with a fitting status.

Domain errors map by base class; Litestar's own (validation, routing, body
size) are reshaped; anything unexpected is logged with the request id and
answered 500 without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import sqlalchemy.exc
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap
from psycopg_pool import PoolTimeout

from api.auth import AuthenticationFailed
from api.logs import current_request_id
from api.security import UnsupportedMediaType
from core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from core.stripe_errors import StripeOutcomeUnknown, StripeRefused, public_message
from core.stripe_webhooks import WebhookPayloadInvalid, WebhookSignatureInvalid
from ledger.errors import (
    AccountNotFound,
    CurrencyMismatch,
    EmptyTransaction,
    IdempotencyConflict,
    LedgerImmutable,
    UnbalancedTransaction,
)

log = logging.getLogger("coachpay.api")

# Most specific first; an error takes the status of the first base it has.
DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (AuthenticationFailed, 401),
    (UnsupportedMediaType, 415),
    (WebhookSignatureInvalid, 400),
    (WebhookPayloadInvalid, 400),
    (NotFound, 404),
    (Forbidden, 403),
    (InvalidInput, 422),
    (Conflict, 409),
    (StripeOutcomeUnknown, 503),
    (StripeRefused, 502),
)

_HTTP_NAMES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


def error_response(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> Response[dict[str, str]]:
    return Response(
        content={"error": error, "detail": detail},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def domain_status(exc: DomainError) -> int:
    for cls, status in DOMAIN_STATUS:
        if isinstance(exc, cls):
            return status
    return 400


# The ledger's refusals are our invariants, never the client's input, and their
# detail names internal idempotency keys: answered with a fixed text, logged whole.
_LEDGER_INTERNAL = (
    UnbalancedTransaction, EmptyTransaction, AccountNotFound, CurrencyMismatch,
    IdempotencyConflict, LedgerImmutable,
)  # fmt: skip
LEDGER_REFUSED = "the ledger refused this change; nothing was booked"


def _stripe_error(exc: BaseException) -> StripeRefused | StripeOutcomeUnknown | None:
    """``exc`` itself or the Stripe error it was raised from (``raise X from stripe_exc``)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, StripeRefused | StripeOutcomeUnknown):
            return cur
        cur, seen = cur.__cause__, seen + 1
    return None


def public_detail(exc: DomainError) -> str:
    """What the client is told: Stripe's text and ledger keys stay in the log."""
    stripe_exc = _stripe_error(exc)
    if stripe_exc is exc:
        return public_message(stripe_exc)
    if stripe_exc is not None:
        # A domain error quoting Stripe ("Stripe refused the refund: <message>").
        public = public_message(stripe_exc)
        if stripe_exc.message and stripe_exc.message in exc.detail:
            return exc.detail.replace(stripe_exc.message, public)
        return public
    if isinstance(exc, _LEDGER_INTERNAL):
        return LEDGER_REFUSED
    detail = exc.detail
    if isinstance(exc, InvalidInput) and exc.field and exc.field not in detail:
        detail = f"{exc.field}: {detail}"
    return detail


def _domain(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    assert isinstance(exc, DomainError)
    status = domain_status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    detail = public_detail(exc)
    if status >= 500 or detail != exc.detail:
        log.warning(
            "%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc.detail
        )
    return error_response(status, type(exc).__name__, detail, headers)


def _validation(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    assert isinstance(exc, ValidationException)
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key, message = item.get("key"), item.get("message", "invalid")
            problems.append(f"{key}: {message}" if key else str(message))
    detail = "; ".join(problems) or _plain(exc.detail)
    if "malformed" in detail.lower() or ("json" in detail.lower() and not problems):
        return error_response(400, "MalformedBody", detail or "request body is not valid JSON")
    return error_response(422, "ValidationError", detail)


def _plain(detail: str) -> str:
    # Litestar prefixes some details with the handler's module path.
    return detail.split(" for ", 1)[0] if detail.startswith("Validation failed") else detail


def _http(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status >= 500:
        return _internal(request, exc)
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException) or status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
        name = "AuthenticationFailed"
    elif isinstance(exc, PermissionDeniedException):
        name = "Forbidden"
    else:
        name = _HTTP_NAMES.get(status, "BadRequest" if status < 500 else "InternalError")
    return error_response(status, name, exc.detail, headers or None)


def _database(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    """The database is away, its pool exhausted, or it broke a deadlock: nothing of
    this request was committed, so a retry is safe (503, not a 500 to page about)."""
    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method, request.url.path, type(exc).__name__, (str(exc).splitlines() or [""])[0],
    )  # fmt: skip
    return error_response(503, "ServiceUnavailable", "the database is unavailable; retry later")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    request_id = current_request_id() or "-"
    log.error(
        "unhandled %s on %s %s (request id %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    return error_response(500, "InternalError", f"request id {request_id}")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: _domain,
    ValidationException: _validation,
    HTTPException: _http,
    psycopg.OperationalError: _database,
    PoolTimeout: _database,
    sqlalchemy.exc.OperationalError: _database,
    sqlalchemy.exc.TimeoutError: _database,
    Exception: _internal,
}
