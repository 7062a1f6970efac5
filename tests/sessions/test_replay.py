"""Every webhook delivered 3 times in shuffled order gives the same ledger as once in order."""

from __future__ import annotations

import random

from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from sessions.models import Booking
from tests.sessions.helpers import (
    book_for,
    deliver,
    event_mark,
    events_since,
    ledger_snapshot,
    make_coach,
    make_session,
    make_user,
    pay,
    trial_balance,
)


async def test_replay_shuffled_three_times_equals_once(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer
) -> None:
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    session = await make_session(db, coach, ctx.clock, capacity=10, price=12345)
    bookings = [
        await book_for(db, ctx, session.id, await make_user(db, "mentee", now)) for _ in range(5)
    ]
    mark = event_mark(emulator)
    paid, refunded, failed, expired, disputed = bookings
    pay(emulator, paid)
    pay(emulator, refunded)
    pay(emulator, failed, "failed")
    emulator.control("POST", f"checkout/sessions/{expired.checkout_session_id}/expire")
    pay(emulator, disputed)
    # Dashboard actions at Stripe: a partial refund, a lost dispute.
    pi = emulator.state.checkout_sessions[refunded.checkout_session_id]["payment_intent"]
    await ctx.gateway.create_refund(
        payment_intent=pi, amount=4321, metadata={}, idempotency_key=f"dash-{refunded.id}"
    )
    pi2 = emulator.state.checkout_sessions[disputed.checkout_session_id]["payment_intent"]
    charge = emulator.state.payment_intents[pi2]["latest_charge"]
    du = emulator.control("POST", f"charges/{charge}/dispute", {})
    emulator.control("POST", f"disputes/{du['id']}/close", {"outcome": "lost"})
    events = events_since(emulator, mark)
    assert len(events) > 15

    async def statuses() -> dict[int, str]:
        out = {}
        for b in bookings:
            await db.refresh(b)
            out[b.id] = b.status
        return out

    savepoint = await db.begin_nested()
    await deliver(db, ctx, events)
    once = await ledger_snapshot(db)
    once_status = await statuses()
    await savepoint.rollback()
    assert (await ledger_snapshot(db))["keys"] == []  # really back to before

    shuffled = events * 3
    random.Random(7).shuffle(shuffled)
    await deliver(db, ctx, shuffled)
    assert await ledger_snapshot(db) == once
    assert await statuses() == once_status
    assert once_status == {
        paid.id: "paid",
        refunded.id: "partially_refunded",
        failed.id: "failed",
        expired.id: "cancelled",
        disputed.id: "paid",
    }
    assert await trial_balance(db) == 0
    assert isinstance(paid, Booking)
