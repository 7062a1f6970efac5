"""Why a webhook event failed, and when a failing event stops being retried (parking).

Two kinds of failure:

- **handler**: the handler raised on this event (a body missing a field it
  needs, a refusal Stripe will repeat, a bug). Trying again gives the same
  answer, so these count: after ``COACHPAY_WEBHOOK_MAX_HANDLER_FAILURES`` (8) in a row (about an
  hour with the inbox's backoff: 30 s, 1, 2, 4, 8, 16, 32 min) the event is
  parked, and after a replay one more is enough (the admin said it is fixed).
- **transient**: the world failed, not the event: Stripe's answer unknown
  (timeout, 5xx, 429 after retries), platform funds short, our Stripe key
  refused (configuration, true of every event at once), the database away,
  a lock or serialisation conflict, a handler that ran out of time. Parking
  these by count would park every event received during a Stripe outage, and
  an admin would have to replay each. So they do not count toward the handler
  limit; they are retried with the same capped backoff (6 h) for as long as
  ``COACHPAY_WEBHOOK_TRANSIENT_PARK_DAYS`` (7) from the first failure of the streak, and
  only then parked: an event that can never get through (a Stripe call that
  always times out) still ends, an outage never parks anything.

A parked event waits for ``core.inbox_admin.replay``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import psycopg
import sqlalchemy.exc
from psycopg_pool import PoolTimeout
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.inbox_models import FAILED, PARKED, PENDING, WebhookEvent
from core.settings import Settings
from core.stripe_errors import (
    StripeAuthenticationError,
    StripeBalanceInsufficient,
    StripeOutcomeUnknown,
)

log = logging.getLogger("core.inbox")

# The defaults of COACHPAY_WEBHOOK_MAX_HANDLER_FAILURES and _TRANSIENT_PARK_DAYS;
# the code takes the values from the settings it is passed.
MAX_HANDLER_FAILURES: int = Settings.model_fields["webhook_max_handler_failures"].default
REPLAY_HANDLER_FAILURES = 1
TRANSIENT_PARK_AFTER = timedelta(days=Settings.model_fields["webhook_transient_park_days"].default)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=6)
MAX_ERROR_LENGTH = 2000


class FailureKind(StrEnum):
    HANDLER = "handler"
    TRANSIENT = "transient"


_TRANSIENT: tuple[type[BaseException], ...] = (
    StripeOutcomeUnknown,
    StripeBalanceInsufficient,
    StripeAuthenticationError,
    sqlalchemy.exc.OperationalError,  # includes deadlocks and serialisation failures
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # the engine's pool
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    ConnectionError,
    TimeoutError,  # the handler ran past COACHPAY_WEBHOOK_HANDLER_TIMEOUT_SECONDS
)


def classify(error: BaseException) -> FailureKind:
    """Transient when the error, or what SQLAlchemy wrapped, is one of the world's."""
    if isinstance(error, _TRANSIENT):
        return FailureKind.TRANSIENT
    if isinstance(error, sqlalchemy.exc.DBAPIError) and (
        error.connection_invalidated or isinstance(error.orig, _TRANSIENT)
    ):
        return FailureKind.TRANSIENT
    return FailureKind.HANDLER


def backoff(failures: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 6 h (``failures``: of the current streak)."""
    return min(BACKOFF_BASE * (2 ** min(max(failures - 1, 0), 30)), BACKOFF_CAP)


@dataclass(frozen=True, slots=True)
class Streak:
    """An event's failures since it was received or last replayed."""

    handler_failures: int
    transient_failures: int
    failing_since: datetime
    replays: int


def should_park(streak: Streak, kind: FailureKind, *, now: datetime, settings: Settings) -> bool:
    """The parking rule, for the failure just recorded in ``streak``."""
    if kind is FailureKind.HANDLER:
        limit = settings.webhook_max_handler_failures
        if streak.replays > 0:
            limit = REPLAY_HANDLER_FAILURES
        return streak.handler_failures >= limit
    return now - streak.failing_since >= timedelta(days=settings.webhook_transient_park_days)


# What an error message may carry that an admin page must not show: API keys,
# webhook secrets, bearer tokens and JWTs, passwords in URLs or key=value pairs.
_SECRETS = (
    (re.compile(r"\b((?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9_*]+"), r"\1[redacted]"),
    (re.compile(r"\b(whsec_)[A-Za-z0-9_]+"), r"\1[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted jwt]"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s,;\"']+"), r"\1[redacted]"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@"), r"\1[redacted]@"),
    (
        re.compile(r"(?i)\b(password|passwd|pwd|secret|api_key|apikey|token)(\s*[=:]\s*)[^\s,;&]+"),
        r"\1\2[redacted]",
    ),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def redact(text: str, *, limit: int = MAX_ERROR_LENGTH) -> str:
    """``text`` without secrets or control characters (PostgreSQL TEXT refuses NUL), cut
    to ``limit`` characters."""
    text = _CONTROL.sub(" ", text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_text(error: BaseException) -> str:
    """``Type: message``, redacted; never raises (an error whose ``str`` raises would
    otherwise keep its event from ever being marked)."""
    name = type(error).__name__
    try:
        message = str(error)
    except Exception:
        message = "<the error's message could not be read>"
    return redact(f"{name}: {message}" if message else name)


async def record_failure(
    factory: async_sessionmaker[AsyncSession],
    event_row_id: int,
    error: BaseException,
    *,
    now: datetime,
    settings: Settings,
) -> bool:
    """Record the failure, then schedule the next try or park the event (True)."""
    kind = classify(error)
    message = error_text(error)
    log.warning("webhook event %s failed (%s): %s", event_row_id, kind, message, exc_info=error)
    async with factory() as db, db.begin():
        row = (
            await db.execute(
                select(WebhookEvent)
                .where(
                    WebhookEvent.id == event_row_id,
                    WebhookEvent.status.in_((PENDING, FAILED)),
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if row is None:  # processed meanwhile by another worker
            return False
        row.attempts += 1
        row.first_attempt_at = row.first_attempt_at or now
        row.last_attempt_at = now
        row.failing_since = row.failing_since or now
        if kind is FailureKind.HANDLER:
            row.handler_failures += 1
        else:
            row.transient_failures += 1
        row.last_error = message
        streak = Streak(
            row.handler_failures, row.transient_failures, row.failing_since, row.replays
        )
        if should_park(streak, kind, now=now, settings=settings):
            row.status, row.next_attempt_at, row.parked_at = PARKED, None, now
            log.error(
                "webhook event %s (%s) parked after %s handler and %s transient failures: %s",
                event_row_id, row.type, row.handler_failures, row.transient_failures, message,
            )  # fmt: skip
            return True
        row.status = FAILED
        row.next_attempt_at = now + backoff(row.handler_failures + row.transient_failures)
        return False
