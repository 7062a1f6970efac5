"""No secret or card data in any log line; ids bound in a task are on its lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from api.logs import formatter
from core.log_context import REDACTED, bind_event_context, bind_ids, scrub
from core.stripe_types import StripeEvent

SECRETS = (
    "sk_live_51Hsecretkey0123",
    "rk_test_restricted9876",
    "whsec_signingsecret42",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "4242424242424242",
    "hunter2-password",
    "123",
)


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(formatter("json"))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    structlog.contextvars.clear_contextvars()
    yield logger, buf
    logger.removeHandler(handler)
    structlog.contextvars.clear_contextvars()


def test_a_logged_dict_of_secrets_and_card_data_keeps_none_of_them(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buf = json_log
    headers = {
        "Authorization": "Bearer " + SECRETS[3],
        "Cookie": "coachpay_session=" + SECRETS[3],
        "Stripe-Signature": "t=1,v1=abcdef",
    }
    card = {"number": SECRETS[4], "cvc": SECRETS[6], "exp_month": 12}
    logger.info(
        "request %s", headers,
        extra={"headers": headers, "card": card, "password": SECRETS[5],
               "config": {"stripe_secret_key": SECRETS[0], "api_key": SECRETS[1],
                          "webhook": SECRETS[2]},
               "note": f"paid with 4242 4242 4242 4242 using {SECRETS[0]}",
               "booking_id": 7},
    )  # fmt: skip
    try:
        raise RuntimeError(f"Stripe said no to {SECRETS[0]} ({SECRETS[2]})")
    except RuntimeError:
        logger.exception("failed")
    out = buf.getvalue()
    for secret in SECRETS:
        assert secret not in out, secret
    assert "4242 4242 4242 4242" not in out
    assert "t=1,v1=abcdef" not in out
    first = json.loads(out.splitlines()[0])
    assert first["booking_id"] == 7  # ids are kept
    assert first["password"] == REDACTED and first["card"] == REDACTED


def test_ids_and_amounts_are_not_taken_for_card_numbers() -> None:
    text = "payout 12 of 1500000 usd, event evt_00000000000001, booking 4242"
    assert scrub(text) == text


@given(st.integers(min_value=10**12, max_value=10**19 - 1))
def test_every_luhn_valid_card_number_is_redacted(n: int) -> None:
    digits = str(n)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    if total % 10 == 0:
        assert digits not in scrub(f"card {digits} ok")


async def test_ids_bound_in_a_task_are_on_its_lines_and_not_on_its_parents(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buf = json_log
    event = StripeEvent.from_dict(
        {"id": "evt_1", "object": "event", "type": "checkout.session.completed", "created": 1,
         "livemode": False,
         "data": {"object": {"id": "cs_1", "metadata": {"booking_id": "41", "coach_id": "3"}}}}
    )  # fmt: skip

    async def process() -> None:
        bind_event_context(event)
        await asyncio.sleep(0)
        logger.info("inside")

    await asyncio.create_task(process())
    logger.info("outside")
    inside, outside = (json.loads(line) for line in buf.getvalue().splitlines())
    assert (inside["stripe_event_id"], inside["booking_id"], inside["coach_id"]) == ("evt_1", 41, 3)
    assert "stripe_event_id" not in outside


def test_a_later_event_drops_the_ids_of_the_one_before() -> None:
    structlog.contextvars.clear_contextvars()
    bind_ids(payout_id=5)
    first = {"id": "evt_a", "object": "event", "type": "x", "created": 1, "livemode": False,
             "data": {"object": {"metadata": {"booking_id": "1"}}}}  # fmt: skip
    second = {"id": "evt_b", "object": "event", "type": "x", "created": 1, "livemode": False,
              "data": {"object": {}}}  # fmt: skip
    bind_event_context(StripeEvent.from_dict(first))
    bind_event_context(StripeEvent.from_dict(second))
    bound = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    assert bound == {"stripe_event_id": "evt_b"}
