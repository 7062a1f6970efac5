"""Webhook delivery: signatures, retries, pause/flush, redelivery in a chosen order."""

from __future__ import annotations

import stripe

from emulator.server import EmulatorServer
from emulator.webhooks import sign
from tests.emulator.conftest import PLATFORM_SECRET, Receiver, create_coach, create_session


def test_signature_matches_stripe_scheme() -> None:
    header = sign(b'{"id": "evt_1", "object": "event"}', "whsec_x", 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert len(header.split("v1=")[1]) == 64


def test_failed_deliveries_are_retried(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    receiver.script.extend([500, 503])
    session = create_session(client)
    emulator.control("POST", "config", {"platform_enabled_events": ["checkout.session.*"]})
    emulator.control("POST", f"checkout/sessions/{session.id}/expire")
    summary = emulator.flush_webhooks()
    assert summary["pending"] == 0
    assert receiver.types() == ["checkout.session.expired"] * 3
    events = emulator.control("GET", "events")["data"]
    (record,) = [e for e in events if e["type"] == "checkout.session.expired"]
    assert record["status"] == "delivered"
    assert [a["status_code"] for a in record["attempts"]] == [500, 503, 200]


def test_gives_up_after_max_attempts(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    emulator.control("POST", "config", {"webhook_max_attempts": 2})
    receiver.script.extend([500] * 5)
    account = create_coach(client)
    emulator.control("POST", f"accounts/{account.id}/complete_onboarding")
    summary = emulator.flush_webhooks()
    assert summary["failed"] == 1
    assert len(receiver.received) == 2


def test_unreachable_endpoint_does_not_block_the_api(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    emulator.control(
        "POST",
        "config",
        {"connect_webhook_url": "http://127.0.0.1:9/nothing", "webhook_max_attempts": 2},
    )
    account = create_coach(client)
    emulator.control("POST", f"accounts/{account.id}/complete_onboarding")
    assert client.v1.accounts.retrieve(account.id).charges_enabled is True
    summary = emulator.flush_webhooks()
    assert summary["failed"] == 1


def test_pause_flush_resume(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    emulator.control("POST", "webhooks/pause")
    session = create_session(client)
    emulator.control("POST", f"checkout/sessions/{session.id}/expire")
    paused = emulator.flush_webhooks(timeout=0.5)
    assert paused["paused"] is True and paused["pending"] == 1
    assert receiver.received == []
    emulator.control("POST", "webhooks/resume")
    assert emulator.flush_webhooks()["pending"] == 0
    assert receiver.types() == ["checkout.session.expired"]


def test_redeliver_in_a_given_order(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    first = create_session(client)
    second = create_session(client)
    emulator.control("POST", f"checkout/sessions/{first.id}/expire")
    emulator.control("POST", f"checkout/sessions/{second.id}/expire")
    emulator.flush_webhooks()
    receiver.clear()
    ids = [e["id"] for e in emulator.control("GET", "events")["data"]]
    result = emulator.control("POST", "events/redeliver", {"ids": [ids[1], ids[0], ids[1]]})
    assert [d["status_code"] for d in result["deliveries"]] == [200, 200, 200]
    order = [r.event["id"] for r in receiver.received]
    assert order == [ids[1], ids[0], ids[1]]
    again = emulator.control("POST", f"events/{ids[0]}/redeliver", {"times": 2})
    assert len(again["deliveries"]) == 2
    for received in receiver.received:
        event = stripe.Webhook.construct_event(
            received.payload, received.signature, PLATFORM_SECRET
        )
        assert event.type == "checkout.session.expired"


def test_event_filter_and_missing_endpoint(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    emulator.control(
        "POST", "config", {"platform_webhook_url": None, "connect_enabled_events": ["payout.paid"]}
    )
    account = create_coach(client)
    emulator.control("POST", f"accounts/{account.id}/complete_onboarding")
    session = create_session(client)
    emulator.control("POST", f"checkout/sessions/{session.id}/expire")
    emulator.flush_webhooks()
    assert receiver.received == []
    statuses = {e["type"]: e["status"] for e in emulator.control("GET", "events")["data"]}
    assert statuses == {"account.updated": "filtered", "checkout.session.expired": "no_endpoint"}


def test_receiver_may_call_the_api_while_handling_an_event(
    client: stripe.StripeClient, emulator: EmulatorServer, receiver: Receiver
) -> None:
    seen: list[str] = []

    def reread(event: dict[str, object]) -> None:
        data = event["data"]
        assert isinstance(data, dict)
        seen.append(client.v1.checkout.sessions.retrieve(data["object"]["id"]).status)

    receiver.callback = reread
    session = create_session(client)
    emulator.control("POST", f"checkout/sessions/{session.id}/expire")
    assert emulator.flush_webhooks(timeout=10)["pending"] == 0
    assert seen == ["expired"]


def test_stats_count_requests_per_route(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    first = create_session(client)
    client.v1.checkout.sessions.retrieve(first.id)
    client.v1.checkout.sessions.retrieve(first.id)
    requests = emulator.control("GET", "stats")["requests"]
    assert requests["POST /v1/checkout/sessions"] == 1
    assert requests["GET /v1/checkout/sessions/{id}"] == 2


def test_reset_forgets_everything(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    create_coach(client)
    emulator.control("POST", "reset")
    state = emulator.control("GET", "state")
    assert all(count == 0 for count in state["counts"].values())
    assert emulator.state.accounts == {}
