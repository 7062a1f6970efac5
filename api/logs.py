"""Structured logs (structlog: JSON in production, readable lines in a terminal) and the
request id that ties them together.

Every ``logging.getLogger(...)`` call goes through structlog's formatter, so the ids
bound with ``structlog.contextvars`` (request id here; Stripe event, booking, payout
and coach ids where they become known, see core.log_context) land on every line,
in async tasks too. ``core.log_context.redact`` keeps secrets and card data out.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

import structlog
from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import observe_http
from core.log_context import redact, redact_message_args

if TYPE_CHECKING:
    from core.settings import Settings

LogFormat = Literal["json", "console"]
_request_id: ContextVar[str | None] = ContextVar("coachpay_request_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("coachpay.access")
WEBHOOK_PATH_PREFIX = "/v1/webhooks/"
# Libraries whose INFO lines are start-up noise (pgserver logs initdb's whole output,
# Alembic a line per plugin and per revision; coachpay says what matters once).
QUIET = (
    "uvicorn.access",
    "httpx",
    "stripe",
    "apscheduler.executors.default",
    "apscheduler.scheduler",
    "pgserver",
    "alembic",
)


def current_request_id() -> str | None:
    return _request_id.get()


def log_format(settings: Settings) -> LogFormat:
    """COACHPAY_LOG_FORMAT, else JSON in production and readable lines elsewhere."""
    if settings.log_format is not None:
        return settings.log_format
    return "json" if settings.env == "production" else "console"


def _drop_formatter_fields(
    _: Any, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    # Another handler's Formatter (pytest's, a library's) may have set these on the
    # record first; ExtraAdder would take them for extras and repeat the message.
    # uvicorn's color_message: the same message with ANSI colours.
    for key in ("message", "asctime", "color_message"):
        event_dict.pop(key, None)
    return event_dict


def _shared_processors() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_formatter_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_message_args,
    ]


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of coachpay's handler (tests attach it to their own handler)."""
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # The traceback as text before redact: a secret in an exception is caught too.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )


def configure_logging(level: str = "INFO", fmt: LogFormat = "console") -> None:
    """Route stdlib logging and structlog to one stderr handler (idempotent: a second
    call only changes the level and the format)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_coachpay", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._coachpay = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if getattr(handler, "_coachpay_format", None) != fmt:
        handler.setFormatter(formatter(fmt))
        handler._coachpay_format = fmt  # type: ignore[attr-defined]
    root.setLevel(level.upper())
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                *_shared_processors(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )


# Path parameters put on every line of their request (``/v1/bookings/{booking_id}/...``).
PATH_IDS = ("booking_id", "payout_id", "coach_id", "session_id")


async def bind_path_ids(request: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook of the app: the ids the route names."""
    params = request.path_params
    ids = {key: params[key] for key in PATH_IDS if key in params}
    if ids:
        structlog.contextvars.bind_contextvars(**ids)


async def with_request_id(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Accept a sane ``X-Request-ID`` or make one; echo it; log one access line per
    request and count it (api.metrics).

    Wraps the whole app (not a route middleware) so that 404s and 405s,
    which never reach a route, get an id too."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    incoming = _header(scope, b"x-request-id")
    request_id = incoming if incoming and _VALID_ID.match(incoming) else uuid.uuid4().hex
    scope.setdefault("state", {})["request_id"] = request_id
    token = _request_id.set(request_id)
    # Ids a handler binds (a booking's) stay with this request: restored afterwards.
    outer = structlog.contextvars.get_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status: list[int] = [0]

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
            headers = list(message.get("headers", []))
            headers.append((b"x-request-id", request_id.encode()))
            message["headers"] = headers
        await send(message)

    try:
        await app(scope, receive, send_with_id)
    finally:
        path = scope.get("path", "")
        seconds = time.perf_counter() - started
        observe_http(scope, status[0], seconds)
        level = _access_level(path, status[0])
        if access_log.isEnabledFor(level):
            access_log.log(
                level,
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status[0],
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**outer)
        _request_id.reset(token)


def _access_level(path: str, status: int) -> int:
    """DEBUG for accepted Stripe deliveries (hundreds a second at peak: at INFO they
    would be most of the log and a measurable share of the CPU); INFO otherwise,
    rejected deliveries included (a wrong secret, a replay)."""
    if 200 <= status < 300 and path.startswith(WEBHOOK_PATH_PREFIX):
        return logging.DEBUG
    return logging.INFO


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
    return None
