"""checkout.session.expired asks Stripe before it locks anything.

Every booking of a coaching session waits on the session's row lock; a slow
Stripe must not hold them all up. A gateway stand-in tries, from another
connection, to lock the session and the booking (NOWAIT) while each Stripe
call of the handler is under way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import session_factory
from core.inbox import HandlerContext
from emulator.server import EmulatorServer
from sessions.models import Booking
from sessions.webhooks import on_checkout_expired
from tests.sessions.helpers import (
    book_for,
    event_mark,
    events_since,
    in_tx,
    make_coach,
    make_session,
    make_user,
    pay,
)


class LockProbe:
    """The real gateway; during each read it records whether the rows were free."""

    def __init__(self, inner: Any, engine: AsyncEngine, session_id: int, booking_id: int) -> None:
        self.inner, self.engine = inner, engine
        self.session_id, self.booking_id = session_id, booking_id
        self.seen: list[tuple[str, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _free(self) -> bool:
        async with self.engine.connect() as conn:
            try:
                for table, row in (
                    ("coaching_sessions", self.session_id),
                    ("bookings", self.booking_id),
                ):
                    await conn.execute(
                        text(f"SELECT 1 FROM {table} WHERE id = :i FOR UPDATE NOWAIT"), {"i": row}
                    )
                return True
            except DBAPIError:
                return False
            finally:
                await conn.rollback()

    async def retrieve_checkout_session(self, session_id: str) -> Any:
        self.seen.append(("checkout_session", await self._free()))
        return await self.inner.retrieve_checkout_session(session_id)

    async def retrieve_payment_intent(self, payment_intent_id: str) -> Any:
        self.seen.append(("payment_intent", await self._free()))
        return await self.inner.retrieve_payment_intent(payment_intent_id)


async def _booking(clean_engine: AsyncEngine, ctx: HandlerContext) -> tuple[Booking, int]:
    async def setup(db: Any) -> tuple[Booking, int]:
        now = ctx.clock.now()
        coach = await make_coach(db, ctx.settings, now)
        session = await make_session(db, coach, ctx.clock)
        booking = await book_for(db, ctx, session.id, await make_user(db, "mentee", now))
        return booking, session.id

    return await in_tx(session_factory(clean_engine), setup)


async def test_expiry_reads_stripe_with_no_lock_held_then_cancels(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    booking, session_id = await _booking(clean_engine, race_ctx)
    mark = event_mark(own_emulator)
    own_emulator.control("POST", f"checkout/sessions/{booking.checkout_session_id}/expire")
    [expired] = [e for e in events_since(own_emulator, mark) if e.type.endswith("expired")]
    probe = LockProbe(race_ctx.gateway, clean_engine, session_id, booking.id)
    ctx = HandlerContext(gateway=probe, clock=race_ctx.clock, settings=race_ctx.settings)  # type: ignore[arg-type]
    factory = session_factory(clean_engine)
    await in_tx(factory, lambda db: on_checkout_expired(db, expired, ctx))
    assert probe.seen == [("checkout_session", True)]
    async with factory() as db:
        found = await db.get(Booking, booking.id)
        assert found is not None and found.status == "cancelled"


async def test_late_expiry_of_a_paid_session_records_the_payment_reading_stripe_unlocked(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    booking, session_id = await _booking(clean_engine, race_ctx)
    mark = event_mark(own_emulator)
    pay(own_emulator, booking)
    [completed] = [e for e in events_since(own_emulator, mark) if e.type.endswith("completed")]
    late = type(completed).from_dict(
        {**completed.raw, "id": "evt_late_expired", "type": "checkout.session.expired"}
    )
    probe = LockProbe(race_ctx.gateway, clean_engine, session_id, booking.id)
    ctx = HandlerContext(gateway=probe, clock=race_ctx.clock, settings=race_ctx.settings)  # type: ignore[arg-type]
    factory = session_factory(clean_engine)
    await in_tx(factory, lambda db: on_checkout_expired(db, late, ctx))
    assert probe.seen == [("checkout_session", True), ("payment_intent", True)]
    async with factory() as db:
        found = await db.get(Booking, booking.id)
        assert found is not None and found.status == "paid"


class GatedRefunds:
    """The real gateway, but ``create_refund`` waits on ``gate`` (a Stripe that is slow to
    answer) after telling ``started`` it is under way."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.started, self.gate = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_refund(self, **kw: Any) -> Any:
        self.started.set()
        await self.gate.wait()
        return await self.inner.create_refund(**kw)


async def test_late_expiry_refunding_a_payment_blocks_no_other_booking_of_the_session(
    clean_engine: AsyncEngine, race_ctx: HandlerContext, own_emulator: EmulatorServer
) -> None:
    booking, session_id = await _booking(clean_engine, race_ctx)
    mark = event_mark(own_emulator)
    pay(own_emulator, booking)
    [completed] = [e for e in events_since(own_emulator, mark) if e.type.endswith("completed")]
    late = type(completed).from_dict(
        {**completed.raw, "id": "evt_late_expired_refund", "type": "checkout.session.expired"}
    )
    factory = session_factory(clean_engine)
    async with factory() as db:  # cancelled on our side meanwhile: the payment is refunded
        await db.execute(
            text("UPDATE bookings SET status = 'cancelled' WHERE id = :b"), {"b": booking.id}
        )
        await db.commit()
    gated = GatedRefunds(race_ctx.gateway)
    ctx = HandlerContext(gateway=gated, clock=race_ctx.clock, settings=race_ctx.settings)  # type: ignore[arg-type]
    handler = asyncio.create_task(in_tx(factory, lambda db: on_checkout_expired(db, late, ctx)))
    await gated.started.wait()

    # The refund call is held open: another mentee books the same session meanwhile.
    async def other(db: Any) -> Booking:
        mentee = await make_user(db, "mentee", race_ctx.clock.now())
        return await book_for(db, race_ctx, session_id, mentee)

    second = await asyncio.wait_for(in_tx(factory, other), timeout=30)
    assert second.status == "pending" and not handler.done()
    gated.gate.set()
    await handler
    async with factory() as db:
        found = await db.get(Booking, booking.id)
        assert found is not None and found.status == "refunded"
