"""Re-reading a webhook's object from Stripe before anything is booked.

A valid signature proves only that a message came through our endpoint
secret: a leaked secret, a test-mode event or an edited replay are signed
too. So a handler takes nothing from ``data.object`` but the object's id,
asks Stripe for the object, and books what Stripe answers. An id Stripe does
not know books nothing: it is logged and the event is done (retrying would
only ask the same question again).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.stripe_errors import StripeNotFound
from core.stripe_types import StripeEvent

T = TypeVar("T")

log = logging.getLogger(__name__)

# Stripe ids are <prefix>_<letters and digits>; anything else (empty, a path,
# a number) is not worth a call and is never put in a URL.
_ID = re.compile(r"[a-z]{2,8}_[A-Za-z0-9_]{1,250}")


def object_id(event: StripeEvent, *prefixes: str, field: str = "id") -> str | None:
    """``data.object[field]`` when it looks like a Stripe id with one of ``prefixes``."""
    raw = event.data_object.get(field)
    if isinstance(raw, dict):  # an expanded field
        raw = raw.get("id")
    if isinstance(raw, str) and _ID.fullmatch(raw) and raw.startswith(prefixes):
        return raw
    log.warning(
        "%s %s: data.object.%s is not a %s id; nothing booked",
        event.type,
        event.id,
        field,
        "/".join(prefixes),
    )
    return None


async def reread(
    event: StripeEvent, kind: str, obj_id: str, fetch: Callable[[str], Awaitable[T]]
) -> T | None:
    """``await fetch(obj_id)``, or None (logged) when Stripe has no such object."""
    try:
        return await fetch(obj_id)
    except StripeNotFound:
        log.warning(
            "%s %s names %s %s, which Stripe does not know; nothing booked",
            event.type,
            event.id,
            kind,
            obj_id,
        )
        return None
