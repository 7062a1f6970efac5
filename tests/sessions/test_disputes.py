from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from ledger.accounts import Kind, balance
from tests.sessions.helpers import (
    book_for,
    coach_balance,
    deliver_new,
    event_mark,
    make_coach,
    make_session,
    make_user,
    pay,
    platform_accounts,
    trial_balance,
)


@pytest.mark.parametrize("outcome", ["won", "lost"])
async def test_dispute_opened_then_closed(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, outcome: str
) -> None:
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock)
    booking = await book_for(db, ctx, session.id, mentee)
    mark = event_mark(emulator)
    pay(emulator, booking)
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    charge = booking.charge_id
    mark = event_mark(emulator)
    dispute = emulator.control("POST", f"charges/{charge}/dispute", {})
    await deliver_new(db, ctx, emulator, mark)
    p = await platform_accounts(db)
    assert await coach_balance(db, coach, Kind.PENDING) == 0  # share taken
    assert await balance(db, p.disputes) == 2000
    assert await balance(db, p.processing) == 320 + 1500  # the dispute fee
    assert await trial_balance(db) == 0

    mark = event_mark(emulator)
    emulator.control("POST", f"disputes/{dispute['id']}/close", {"outcome": outcome})
    await deliver_new(db, ctx, emulator, mark)
    await deliver_new(db, ctx, emulator, mark)  # twice: nothing more
    assert await balance(db, p.disputes) == 0
    if outcome == "won":
        assert await coach_balance(db, coach, Kind.PENDING) == -8000
        assert await balance(db, p.processing) == 320
        assert await balance(db, p.losses) == 0
    else:
        assert await coach_balance(db, coach, Kind.PENDING) == 0
        assert await balance(db, p.losses) == 2000
        assert await balance(db, p.fees) == -2000
    assert await trial_balance(db) == 0
