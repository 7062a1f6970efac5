"""The event catalogue, the payload envelope and the public event id.

The triggers of migration 0013 write ``data``; this module wraps it in the
envelope every receiver gets (and ``GET /v1/admin/events`` lists):

``{"id": "evt_…", "type": "booking.paid", "api_version": "2026-12-01",
"timestamp": "<occurred_at, UTC ISO 8601>", "data": {...}}``

A change of a payload's shape that could break a receiver takes a new
``API_VERSION``; adding a field does not.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

API_VERSION = "2026-12-01"
ALL_TYPES = "*"

# type -> what it says (README and the admin API list these).
EVENT_TYPES: dict[str, str] = {
    "booking.pending": "a booking was made, or retried: a Checkout Session awaits payment",
    "booking.paid": "the payment of a pending or failed booking succeeded",
    "booking.failed": "the payment failed (the mentee may retry)",
    "booking.cancelled": "an unpaid booking was cancelled (by the mentee, expiry or the session)",
    "booking.refunded": "a refund was booked, partial or full (data.refund, data.full)",
    "booking.refund_failed": "a booked refund failed at the bank: the money is back with us",
    "booking.disputed": "the mentee's bank opened a dispute (chargeback) of the payment",
    "booking.dispute_closed": "a dispute was won or lost (data.dispute.status)",
    "session.cancelled": "a coaching session was cancelled; its bookings follow",
    "coach.onboarding_updated": "a coach's Connect account was created or changed status",
    "earning.released": "a coach's held share became available for payout",
    "payout.created": "a payout (transfer to the coach's Connect account) was reserved",
    "payout.paid": "the transfer was made",
    "payout.failed": "Stripe refused the transfer; the money is available again",
    "payout.reversed": "part or all of a paid transfer was reversed (data.reversal.amount)",
}

_EVENT_ID = re.compile(r"evt_([0-9a-f]{32})")


def event_id(uid: uuid.UUID) -> str:
    """The public id (``webhook-id``): the same for every attempt and replay of an event."""
    return f"evt_{uid.hex}"


def parse_event_id(value: str) -> uuid.UUID | None:
    match = _EVENT_ID.fullmatch(value)
    return uuid.UUID(match.group(1)) if match else None


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(*, uid: uuid.UUID, type: str, occurred_at: datetime, data: Any) -> dict[str, Any]:
    return {
        "id": event_id(uid),
        "type": type,
        "api_version": API_VERSION,
        "timestamp": iso(occurred_at),
        "data": data,
    }


def body(envelope: dict[str, Any]) -> str:
    """The exact text sent and signed (compact, keys in envelope order)."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def wants(event_types: list[str], event_type: str) -> bool:
    return ALL_TYPES in event_types or event_type in event_types
