# ruff: noqa: F811  (pytest fixtures imported from tests/e2e and tests/api)
"""The real flows emit their events: onboarding, booking, payment through the emulator,
refunds (partial, then the rest after release), a payout run, a session cancelled.

Then every event goes to a live receiver, signed, verified with the library, in order.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.runtime import Runtime
from core.clock import FrozenClock
from core.outbox.delivery import DeliveryConfig
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from payouts.jobs import run_cycle
from tests.api.conftest import (  # noqa: F401  (fixtures)
    StripeSigner,
    Tokens,
    api_clock,
    app,
    app_client,
    extra_routes,
    handler_registry,
    stripe_signer,
    tokens,
    webhook_processing,
)
from tests.e2e.test_payment_flow import (  # noqa: F401  (fixtures and helpers)
    Stripe,
    api_settings,
    app_runtime,
    emulator,
    fresh_emulator,
    onboard_coach,
    publish,
)
from tests.outbox.conftest import LOCAL
from tests.outbox.helpers import drain, endpoint
from tests.outbox.receiver import Receiver

Client = AsyncTestClient[Litestar]


async def _types(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT type FROM outbox_events ORDER BY occurred_at, id"))
        return [str(t) for t in rows.scalars()]


async def _data(engine: AsyncEngine, type: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT data FROM outbox_events WHERE type = :t ORDER BY id"), {"t": type}
        )
        return [dict(d) for d in rows.scalars()]


async def _book_and_pay(client: Client, stripe: Stripe, session_id: int, mentee: Any) -> int:
    r = await client.post(f"/v1/sessions/{session_id}/bookings", headers=mentee)
    assert r.status_code == 201, r.text
    cs = r.json()["checkout_session_id"]
    stripe.emulator.control("POST", f"checkout/sessions/{cs}/pay", {"outcome": "succeeded"})
    await stripe.flush()
    return int(r.json()["id"])


@pytest.mark.timeout(120)
async def test_the_flows_emit_one_event_per_change_and_all_arrive_in_order(
    app_client: Client,
    emulator: EmulatorServer,
    stripe_signer: StripeSigner,
    tokens: Tokens,
    api_clock: FrozenClock,
    clean_engine: AsyncEngine,
    app_runtime: Runtime,
    api_settings: Any,
) -> None:
    stripe = Stripe(emulator, app_client, stripe_signer)
    coach = await onboard_coach(app_client, stripe, tokens, "coach-outbox")
    session = await publish(app_client, coach, api_clock)
    paid = await _book_and_pay(app_client, stripe, session["id"], tokens.headers("mentee", "m-1"))
    api_clock.advance(timedelta(minutes=1))
    other = tokens.headers("mentee", "m-2")
    r = await app_client.post(f"/v1/sessions/{session['id']}/bookings", headers=other)
    unpaid = r.json()["id"]
    r = await app_client.post(f"/v1/bookings/{unpaid}/cancel", headers=other)
    assert r.status_code == 200, r.text
    api_clock.advance(timedelta(minutes=1))
    refund = f"/v1/bookings/{paid}/refund"
    r = await app_client.post(refund, json={"amount": 3000}, headers=coach)
    assert r.status_code in (200, 201), r.text
    await stripe.flush()  # Stripe's refund.created echo: booked once, one event

    # A second session, booked and paid, then cancelled by its coach: refunded in full.
    api_clock.advance(timedelta(minutes=1))
    second = await publish(app_client, coach, api_clock, title="Second")
    await _book_and_pay(app_client, stripe, second["id"], tokens.headers("mentee", "m-3"))
    api_clock.advance(timedelta(minutes=1))
    r = await app_client.post(f"/v1/sessions/{second['id']}/cancel", json={}, headers=coach)
    assert r.status_code == 200, r.text
    await stripe.flush()

    # Past the hold: one release and payout cycle, the job's way.
    later = FrozenClock(api_clock.now() + timedelta(days=7))
    api_clock.set(later.now())
    gateway = StripeGateway.from_settings(api_settings)
    try:
        cycle = await run_cycle(
            app_runtime.context.factory, gateway=gateway, clock=later, settings=api_settings
        )
    finally:
        await gateway.aclose()
    assert cycle.release.released == 1 and cycle.payouts.paid == 1, cycle
    await stripe.flush()
    api_clock.advance(timedelta(minutes=1))
    r = await app_client.post(refund, json={}, headers=coach)  # the rest, after release
    assert r.status_code in (200, 201), r.text
    await stripe.flush()

    assert await _types(clean_engine) == [
        "coach.onboarding_updated",  # the account made (onboarding)
        "coach.onboarding_updated",  # account.updated: active
        "booking.pending",
        "booking.paid",
        "booking.pending",
        "booking.cancelled",
        "booking.refunded",  # 3000 of 10000
        "booking.pending",
        "booking.paid",
        "session.cancelled",
        "booking.refunded",  # the cancellation's full refund
        "earning.released",  # the first booking's (the second's was all refunded)
        "payout.created",
        "payout.paid",
        "booking.refunded",  # the remaining 7000
    ]
    partial, cancelled, rest = await _data(clean_engine, "booking.refunded")
    assert (partial["refund"]["amount"], partial["full"]) == (3000, False)
    assert partial["booking"]["status"] == "partially_refunded"
    assert (rest["refund"]["amount"], rest["full"]) == (7000, True)
    assert rest["booking"]["amount_refunded"] == 10000
    assert cancelled["full"] is True and cancelled["refund"]["source"] == "auto"
    (released,) = await _data(clean_engine, "earning.released")
    assert released["earning"]["amount"] == 8000 - 2400 and released["earning"]["currency"] == "usd"
    accounts = await _data(clean_engine, "coach.onboarding_updated")
    assert [a["account"]["status"] for a in accounts] == ["onboarding", "active"]
    (payout,) = await _data(clean_engine, "payout.paid")
    assert payout["payout"]["amount"] == 5600 and payout["payout"]["stripe_transfer_id"]

    receiver = Receiver().start()
    try:
        factory = app_runtime.context.factory
        _, receiver.secret = await endpoint(factory, _guard(), api_clock, receiver.url)
        async with factory() as db, db.begin():  # events from before the endpoint: a replay
            from core.outbox.endpoints import get_endpoint
            from core.outbox.events import replay_range

            ep = await get_endpoint(db, 1)
            start = api_clock.now() - timedelta(days=30)
            end = api_clock.now() + timedelta(days=1)
            await replay_range(db, endpoint=ep, start=start, end=end, now=api_clock.now())
        await drain(factory, api_clock, DeliveryConfig(allowed=LOCAL))
        assert all(r.verified for r in receiver.requests)
        assert receiver.effect_types() == await _types(clean_engine)
    finally:
        receiver.stop()


def _guard() -> Any:
    from core.outbox.endpoints import Guard

    return Guard(allowed=LOCAL)
