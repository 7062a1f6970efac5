"""Endpoint secrets and Standard Webhooks signatures (the ``standardwebhooks`` library).

A secret is ``whsec_`` + base64 of 32 random bytes, the Standard Webhooks
format, so receivers can pass it to any of its libraries unchanged. During a
rotation's overlap the previous secret signs too, as a second ``v1,``
signature in the same header: a receiver still on the old secret verifies,
one on the new secret verifies, and neither needs to know which is which.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def active_secrets(
    secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    if previous and previous_expires_at is not None and now < previous_expires_at:
        return [secret, previous]
    return [secret]


def headers(
    msg_id: str, timestamp: datetime, body: str, signing_secrets: Sequence[str]
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for one attempt.

    ``timestamp`` is the wall-clock time of the attempt: receivers compare it
    with their own clock (5 minutes' tolerance in the libraries) to refuse
    replayed requests, so it is never the event's time.
    """
    if not signing_secrets:
        raise ValueError("at least one secret")
    # The library reads the datetime's fields as UTC (replace, not astimezone).
    at = timestamp.astimezone(UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, at, body) for s in signing_secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
