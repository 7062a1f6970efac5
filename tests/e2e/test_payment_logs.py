# ruff: noqa: F811  (pytest fixtures imported from the payment flow module)
"""A processed payment event's log line: one JSON object carrying the Stripe event id
and the booking id (bound where the inbox dispatches it, core.log_context)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from api.logs import formatter
from emulator.server import EmulatorServer
from tests.api.conftest import StripeSigner, Tokens
from tests.e2e.test_payment_flow import (  # noqa: F401  (fixtures)
    Client,
    Stripe,
    api_clock,
    api_settings,
    app,
    app_client,
    app_runtime,
    emulator,
    extra_routes,
    fresh_emulator,
    handler_registry,
    onboard_coach,
    publish,
    stripe_signer,
    tokens,
    webhook_processing,
)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every log line as production writes it (JSON), webhook access lines included."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(formatter("json"))
    root, access = logging.getLogger(), logging.getLogger("coachpay.access")
    levels = root.level, access.level
    root.addHandler(handler)
    access.setLevel(logging.DEBUG)  # accepted deliveries are logged at DEBUG
    root.setLevel(logging.DEBUG)
    yield buf
    root.removeHandler(handler)
    root.setLevel(levels[0])
    access.setLevel(levels[1])


async def test_the_payment_events_log_line_is_json_with_event_and_booking_ids(
    app_client: Client,
    emulator: EmulatorServer,
    stripe_signer: StripeSigner,
    tokens: Tokens,
    api_clock: Any,
    json_lines: io.StringIO,
) -> None:
    stripe = Stripe(emulator, app_client, stripe_signer)
    coach = await onboard_coach(app_client, stripe, tokens, "coach-logs")
    session = await publish(app_client, coach, api_clock)
    mentee = tokens.headers("mentee", "mentee-logs")
    r = await app_client.post(f"/v1/sessions/{session['id']}/bookings", headers=mentee)
    booking = r.json()
    emulator.control(
        "POST", f"checkout/sessions/{booking['checkout_session_id']}/pay", {"outcome": "succeeded"}
    )
    events = await stripe.flush()
    paid = next(e for e in events if e["type"] == "checkout.session.completed")
    r = await app_client.get("/v1/bookings", headers=mentee)
    assert [b["status"] for b in r.json()["upcoming"]] == ["paid"]

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]  # all JSON
    delivery = [
        line for line in lines
        if line.get("stripe_event_id") == paid["id"] and line.get("logger") == "coachpay.access"
    ]  # fmt: skip
    assert len(delivery) == 1
    assert delivery[0]["booking_id"] == booking["id"]
    assert delivery[0]["status"] == 200 and delivery[0]["path"] == "/v1/webhooks/stripe"
    assert delivery[0]["request_id"]
    # The request after it carries none of the event's ids.
    later = [line for line in lines if line.get("path") == "/v1/bookings"]
    assert later and all("stripe_event_id" not in line for line in later)
