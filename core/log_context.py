"""What every log line carries (ids bound where they become known) and what none may
carry (secrets, card data).

The ids live in ``structlog.contextvars``: bound in one task, they are on every
line that task logs, and on those of the tasks it starts (asyncio copies the
context), whatever logger is used. api.logs renders them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

import structlog

from core.stripe_types import StripeEvent

# Ids an event may name in its object's metadata (ours: bookings' Checkout Sessions
# and payments, payouts' transfers, refunds).
EVENT_METADATA_IDS = ("booking_id", "payout_id", "coach_id")
REDACTED = "[redacted]"
# A key naming a credential or card data: its value is never logged.
_SENSITIVE_KEY = re.compile(
    r"authorization|cookie|signature|secret|password|passwd|token|api[_-]?key"
    r"|card|number|cvc|cvv|exp_month|exp_year|iban|routing",
    re.IGNORECASE,
)
# Values that are credentials wherever they appear: Stripe secret and restricted
# keys, webhook signing secrets, bearer tokens and JWTs.
_SECRET_VALUE = re.compile(
    r"\b(?:sk|rk)_[A-Za-z0-9_]{4,}|\bwhsec_[A-Za-z0-9_]+"
    r"|\bBearer\s+[^\s\"']+|\beyJ[\w-]+\.[\w-]+\.[\w-]+"
    r"|\bt=\d+,v1=[^\s\"']+",  # a Stripe-Signature header's value
)
# 13 to 19 digits, maybe grouped by spaces or dashes: a card number if Luhn agrees.
_PAN = re.compile(r"(?<![\w.])(?:\d[ -]?){12,18}\d(?![\w.])")


def bind_event_context(event: StripeEvent) -> None:
    """The event's id and the ids its object names; ids of an earlier event processed
    in the same task are dropped first."""
    structlog.contextvars.unbind_contextvars(*EVENT_METADATA_IDS)
    ids: dict[str, object] = {"stripe_event_id": event.id}
    metadata = event.data_object.get("metadata")
    if isinstance(metadata, Mapping):
        for key in EVENT_METADATA_IDS:
            value = metadata.get(key)
            if isinstance(value, str) and value.isdigit():
                ids[key] = int(value)
    structlog.contextvars.bind_contextvars(**ids)


def bind_ids(**ids: object) -> None:
    """``bind_ids(booking_id=7)``: on every later line of this task and its children."""
    structlog.contextvars.bind_contextvars(**ids)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _scrub_text(text: str) -> str:
    text = _SECRET_VALUE.sub(REDACTED, text)

    def pan(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        return REDACTED if _luhn(digits) else match.group(0)

    return _PAN.sub(pan, text)


def scrub(value: Any) -> Any:
    """``value`` with sensitive keys' values and secret-looking strings replaced."""
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SENSITIVE_KEY.search(k) else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    return value


def redact_message_args(
    _: Any, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """structlog processor for stdlib records: the message rebuilt from its ``%s``
    arguments redacted, so a dict logged as an argument loses its secrets by key too."""
    record = event_dict.get("_record")
    args = getattr(record, "args", None)
    if record is not None and args:
        # On a mismatch the message stays as logging rendered it; redact() scrubs its text.
        with contextlib.suppress(TypeError, ValueError, KeyError):
            event_dict["event"] = str(record.msg) % (
                scrub(args) if isinstance(args, Mapping) else tuple(scrub(list(args)))
            )
    return event_dict


def redact(_: Any, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """structlog processor: no secret or card data in any rendered line."""
    out: structlog.types.EventDict = {}
    for key, value in event_dict.items():
        if _SENSITIVE_KEY.search(key):
            out[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple | set | frozenset):
            out[key] = scrub(value)
        else:
            out[key] = value
    return out
