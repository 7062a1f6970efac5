"""The gateway end to end against the in-process Stripe emulator.

Same calls as the respx tests, but through real HTTP, real form encoding and
the emulator's Stripe semantics (idempotent replays, refusals, faults).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from core.stripe_errors import (
    StripeBalanceInsufficient,
    StripeNotFound,
    StripeOutcomeUnknown,
    StripeRefused,
)
from core.stripe_gateway import StripeGateway

emulator_server = pytest.importorskip("emulator.server")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    server = emulator_server.EmulatorServer(seed=1)
    server.start()
    yield server
    server.stop()


async def control(
    server: Any, path: str, body: dict[str, Any] | None = None, *, method: str = "POST"
) -> Any:
    async with httpx.AsyncClient(base_url=f"{server.base_url}/_emulator", timeout=30) as http:
        response = await http.request(method, path, json=body if method == "POST" else None)
    response.raise_for_status()
    return response.json()


@pytest.fixture
async def gw(emulator: Any) -> AsyncIterator[StripeGateway]:
    await control(emulator, "/reset")
    gateway = StripeGateway("sk_test_emulator", api_base=emulator.base_url, backoff_base=0)
    yield gateway
    await gateway.aclose()
    await control(emulator, "/faults", method="DELETE")


def _key(name: str) -> str:
    # Keys are scoped per emulator lifetime; make each test's keys unique.
    return f"coachpay:test:{name}:{time.monotonic_ns()}"


async def _onboarded_coach(gw: StripeGateway, emulator: Any) -> str:
    acct = await gw.create_account(
        email="coach@example.com",
        country="US",
        default_currency="usd",
        metadata={"coach_id": "42"},
        idempotency_key=_key("acct"),
    )
    await control(emulator, f"/accounts/{acct.id}/complete_onboarding")
    return acct.id


async def _paid_session(gw: StripeGateway, emulator: Any, amount: int = 5000) -> str:
    session = await gw.create_checkout_session(
        amount=amount,
        currency="usd",
        product_name="Mentoring",
        success_url="https://ok.test",
        cancel_url="https://no.test",
        expires_at=int(time.time()) + 3600,
        metadata={"booking_id": "7"},
        transfer_group="booking-7",
        client_reference_id="booking-7",
        idempotency_key=_key("cs"),
    )
    await control(emulator, f"/checkout/sessions/{session.id}/pay", {"outcome": "succeeded"})
    paid = await gw.retrieve_checkout_session(session.id)
    assert paid.status == "complete" and paid.payment_status == "paid"
    assert paid.payment_intent_id is not None
    return paid.payment_intent_id


async def test_onboarding_flow(gw: StripeGateway, emulator: Any) -> None:
    acct = await gw.create_account(
        email="coach@example.com",
        country="US",
        metadata={"coach_id": "42"},
        idempotency_key=_key("acct"),
    )
    assert acct.id.startswith("acct_")
    assert not acct.can_receive_transfers
    link = await gw.create_account_link(
        account_id=acct.id, refresh_url="https://r.test", return_url="https://x.test"
    )
    assert link.url.startswith(emulator.base_url)
    await control(emulator, f"/accounts/{acct.id}/complete_onboarding")
    ready = await gw.retrieve_account(acct.id)
    assert ready.payouts_enabled and ready.details_submitted
    assert ready.transfers_capability == "active"
    updated = await gw.update_account(
        acct.id, metadata={"tier": "gold"}, idempotency_key=_key("upd")
    )
    assert updated.metadata == {"coach_id": "42", "tier": "gold"}
    login = await gw.create_login_link(acct.id)
    assert acct.id in login.url


async def test_payment_fee_transfer_reversal_refund(gw: StripeGateway, emulator: Any) -> None:
    coach = await _onboarded_coach(gw, emulator)
    pi = await gw.retrieve_payment_intent(await _paid_session(gw, emulator))
    assert pi.status == "succeeded" and pi.latest_charge is not None
    assert pi.latest_charge.fee == 175  # 2.9 % of 5000 + 30
    charge = await gw.retrieve_charge(pi.latest_charge.id)
    assert charge.transfer_group == "booking-7" and charge.fee == 175

    key = _key("tr")
    transfer = await gw.create_transfer(
        amount=4000,
        currency="usd",
        destination=coach,
        transfer_group="booking-7",
        metadata={"payout_id": "11"},
        source_transaction=charge.id,
        idempotency_key=key,
    )
    again = await gw.create_transfer(
        amount=4000,
        currency="usd",
        destination=coach,
        transfer_group="booking-7",
        metadata={"payout_id": "11"},
        source_transaction=charge.id,
        idempotency_key=key,
    )
    assert again.id == transfer.id  # replayed, not paid twice
    assert (await gw.retrieve_transfer(transfer.id)).amount == 4000
    listed = await gw.list_transfers(transfer_group="booking-7")
    assert [t.id for t in listed.data] == [transfer.id]
    found = await gw.find_transfer_by_metadata(
        destination=coach, transfer_group="booking-7", key="payout_id", value="11"
    )
    assert found is not None and found.id == transfer.id

    reversal = await gw.create_transfer_reversal(
        transfer.id, amount=1000, metadata={"r": "1"}, idempotency_key=_key("rev")
    )
    assert (reversal.transfer_id, reversal.amount) == (transfer.id, 1000)
    refund = await gw.create_refund(
        payment_intent=pi.id, amount=1000, metadata={}, idempotency_key=_key("re")
    )
    assert refund.status == "succeeded" and refund.charge_id == charge.id

    balance = await gw.retrieve_balance()
    assert balance.available["usd"] == 5000 - 175 - 4000 + 1000 - 1000
    txns = [t async for t in gw.iter_balance_transactions(page_size=2)]
    assert {t.type for t in txns} >= {"charge", "transfer", "transfer_refund", "refund"}

    events = (await control(emulator, "/events", method="GET"))["data"]
    event = await gw.retrieve_event(events[-1]["id"])
    assert event.id == events[-1]["id"]


async def test_refusals(gw: StripeGateway, emulator: Any) -> None:
    coach = await _onboarded_coach(gw, emulator)
    with pytest.raises(StripeBalanceInsufficient):
        await gw.create_transfer(
            amount=10**9,
            currency="usd",
            destination=coach,
            metadata={},
            idempotency_key=_key("big"),
        )
    pending = await gw.create_account(
        email=None, country="US", metadata={}, idempotency_key=_key("acct2")
    )
    await _paid_session(gw, emulator)
    with pytest.raises(StripeRefused) as info:
        await gw.create_transfer(
            amount=100,
            currency="usd",
            destination=pending.id,
            metadata={},
            idempotency_key=_key("nocap"),
        )
    assert info.value.code == "insufficient_capabilities_for_transfer"
    with pytest.raises(StripeNotFound):
        await gw.retrieve_transfer("tr_missing")


async def test_expire_checkout_session(gw: StripeGateway) -> None:
    session = await gw.create_checkout_session(
        amount=5000,
        currency="usd",
        product_name="S",
        success_url="https://ok.test",
        cancel_url="https://no.test",
        expires_at=int(time.time()) + 3600,
        metadata={},
        transfer_group="booking-9",
        idempotency_key=_key("cs"),
    )
    expired = await gw.expire_checkout_session(session.id, idempotency_key=_key("exp"))
    assert expired.status == "expired"


async def test_faults_are_retried_with_the_same_key(gw: StripeGateway, emulator: Any) -> None:
    coach = await _onboarded_coach(gw, emulator)
    await _paid_session(gw, emulator)
    await control(
        emulator,
        "/faults/next",
        {
            "path_prefix": "/v1/transfers",
            "method": "POST",
            "faults": ["429", "500", "drop_after_commit"],
        },
    )
    transfer = await gw.create_transfer(
        amount=1000, currency="usd", destination=coach, metadata={}, idempotency_key=_key("flaky")
    )
    stats = await control(emulator, "/stats", method="GET")
    assert stats["requests"]["POST /v1/transfers"] == 4
    assert stats["idempotent_replays"] == 1  # the dropped-after-commit one came back
    listed = await gw.list_transfers(destination=coach)
    assert [t.id for t in listed.data] == [transfer.id]


async def test_persistent_timeout_is_outcome_unknown(emulator: Any) -> None:
    await control(emulator, "/reset")
    await control(
        emulator, "/faults", {"rate_timeout": 1.0, "timeout_seconds": 2, "paths": ["/v1/balance"]}
    )
    gateway = StripeGateway(
        "sk_test_emulator", api_base=emulator.base_url, max_retries=1, timeout=0.3, backoff_base=0
    )
    try:
        with pytest.raises(StripeOutcomeUnknown):
            await gateway.retrieve_balance()
    finally:
        await gateway.aclose()
        await control(emulator, "/faults", method="DELETE")
    stats = await control(emulator, "/stats", method="GET")
    assert stats["faults"]["timeout"] == 2
