"""Webhook signature verification and event parsing."""

from __future__ import annotations

import json
import time

import pytest

from core.errors import DomainError
from core.stripe_webhooks import (
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
    construct_event,
    sign_payload,
)
from tests.core.stripe_fixtures import event

SECRET = "whsec_test_platform"
PAYLOAD = json.dumps(event()).encode()


def test_valid_signature_yields_event() -> None:
    result = construct_event(PAYLOAD, sign_payload(PAYLOAD, SECRET), SECRET)
    assert result.id == "evt_1"
    assert result.type == "checkout.session.completed"
    assert result.account is None
    assert result.livemode is False
    assert result.data_object["id"] == "cs_test_1"
    assert result.raw == json.loads(PAYLOAD)


def test_connect_event_carries_account() -> None:
    body = json.dumps(event(account="acct_1Coach", type="account.updated")).encode()
    result = construct_event(body, sign_payload(body, SECRET), SECRET)
    assert result.account == "acct_1Coach"


def test_sign_payload_format() -> None:
    header = sign_payload(b"{}", SECRET, timestamp=1_700_000_000)
    t, v1 = header.split(",")
    assert t == "t=1700000000"
    assert v1.startswith("v1=") and len(v1) == 3 + 64


def test_one_of_several_signatures_may_match() -> None:
    # During secret rotation Stripe sends one v1 per active secret.
    good = sign_payload(PAYLOAD, SECRET)
    other = sign_payload(PAYLOAD, "whsec_old").split(",")[1]
    assert construct_event(PAYLOAD, f"{good},{other}", SECRET).id == "evt_1"


def test_tampered_payload_is_rejected() -> None:
    header = sign_payload(PAYLOAD, SECRET)
    tampered = PAYLOAD.replace(b"evt_1", b"evt_2")
    with pytest.raises(WebhookSignatureInvalid):
        construct_event(tampered, header, SECRET)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookSignatureInvalid):
        construct_event(PAYLOAD, sign_payload(PAYLOAD, "whsec_other"), SECRET)


def test_stale_timestamp_is_rejected() -> None:
    stale = sign_payload(PAYLOAD, SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookSignatureInvalid):
        construct_event(PAYLOAD, stale, SECRET)


def test_tolerance_is_configurable() -> None:
    old = sign_payload(PAYLOAD, SECRET, timestamp=int(time.time()) - 600)
    assert construct_event(PAYLOAD, old, SECRET, tolerance=900).id == "evt_1"


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "t=1700000000"])
def test_missing_or_malformed_header_is_rejected(header: str | None) -> None:
    with pytest.raises(WebhookSignatureInvalid):
        construct_event(PAYLOAD, header, SECRET)


def test_non_utf8_payload_is_rejected_as_unsigned() -> None:
    body = b"\xff\xfe"
    with pytest.raises(WebhookSignatureInvalid):
        construct_event(body, sign_payload(body, SECRET), SECRET)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"id": "x", "object": "charge"}).encode(),
        json.dumps({"id": "evt_1", "object": "event", "type": "x", "created": 1}).encode(),
        json.dumps({**event(), "data": {"object": "cs_1"}}).encode(),
    ],
    ids=["not-json", "not-object", "not-event", "no-data", "data-not-object"],
)
def test_signed_but_invalid_payload(body: bytes) -> None:
    with pytest.raises(WebhookPayloadInvalid) as info:
        construct_event(body, sign_payload(body, SECRET), SECRET)
    assert isinstance(info.value, DomainError)
