"""Structured logs (``key=value`` lines) and the request id that ties them together."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from litestar.types import ASGIApp, Message, Receive, Scope, Send

_request_id: ContextVar[str | None] = ContextVar("coachpay_request_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
access_log = logging.getLogger("coachpay.access")
WEBHOOK_PATH_PREFIX = "/v1/webhooks/"


def current_request_id() -> str | None:
    return _request_id.get()


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... request_id=... msg="..." k=v``: grep- and parse-friendly."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            fields["request_id"] = request_id
        fields["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "request_id" and not key.startswith("_"):
                fields[key] = value
        line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


def configure_logging(level: str = "INFO") -> None:
    """Send every log line to stderr in key=value form (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_coachpay", False):
            root.setLevel(level.upper())
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler._coachpay = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "stripe", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def with_request_id(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Accept a sane ``X-Request-ID`` or make one; echo it; log one access line per request.

    Wraps the whole app (not a route middleware) so that 404s and 405s,
    which never reach a route, get an id too."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    incoming = _header(scope, b"x-request-id")
    request_id = incoming if incoming and _VALID_ID.match(incoming) else uuid.uuid4().hex
    scope.setdefault("state", {})["request_id"] = request_id
    token = _request_id.set(request_id)
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
        level = _access_level(path, status[0])
        if access_log.isEnabledFor(level):
            access_log.log(
                level,
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status[0],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
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
