"""Bookings with real commits: one Checkout Session per attempt whatever is retried, a
Stripe Customer per mentee, and no booking of a session waiting behind another's Stripe call.

A gated gateway holds one Stripe call open (an ``asyncio.Event``) while the
test does something else; ``asyncio.wait`` with a generous timeout only keeps
a regression from hanging the suite, the assertion is on which task finished.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import session_factory
from core.inbox import HandlerContext
from core.stripe_errors import StripeOutcomeUnknown
from core.users import User
from emulator.server import EmulatorServer
from sessions.audit import Actor
from sessions.booking import book
from sessions.booking_changes import retry_booking
from sessions.catalog import count_seats
from sessions.models import Booking
from sessions.webhooks import on_checkout_paid
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

HANG_GUARD = 30.0  # seconds; only reached when the second task is blocked (the bug)


class Gated:
    """Holds the first call of ``method`` until ``release`` is set (a slow Stripe)."""

    def __init__(self, inner: Any, method: str) -> None:
        self.inner, self.method = inner, method
        self.started, self.release = asyncio.Event(), asyncio.Event()
        self._held = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name != self.method:
            return target

        async def call(**kw: Any) -> Any:
            if not self._held:
                self._held = True
                self.started.set()
                await self.release.wait()
            return await target(**kw)

        return call


@pytest.fixture
def factory(clean_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(clean_engine)


async def _session(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, *, capacity: int = 5
) -> int:
    async def setup(db: AsyncSession) -> int:
        coach = await make_coach(db, ctx.settings, ctx.clock.now())
        return (await make_session(db, coach, ctx.clock, capacity=capacity)).id

    return await in_tx(factory, setup)


async def _mentee(factory: async_sessionmaker[AsyncSession], ctx: HandlerContext) -> int:
    return await in_tx(factory, lambda db: make_user(db, "mentee", ctx.clock.now()))


def _booking(ctx: HandlerContext, session_id: int, mentee: int, gateway: Any = None) -> Any:
    async def run(db: AsyncSession) -> Booking:
        return await book(
            db,
            session_id=session_id,
            mentee_id=mentee,
            gateway=gateway or ctx.gateway,
            clock=ctx.clock,
            settings=ctx.settings,
        )

    return run


def _sessions_for(emulator: EmulatorServer, booking_id: int) -> list[dict[str, Any]]:
    with emulator.state.lock:
        return [
            cs
            for cs in emulator.state.checkout_sessions.values()
            if cs["metadata"].get("booking_id") == str(booking_id)
        ]


def _lose_next_answer(emulator: EmulatorServer, path: str) -> None:
    emulator.control(
        "POST",
        "faults/next",
        {"path_prefix": path, "method": "POST", "faults": ["drop_after_commit"]},
    )


async def test_a_booking_retried_after_a_lost_answer_has_one_checkout_and_one_seat(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    session_id = await _session(factory, race_ctx, capacity=1)
    mentee = await _mentee(factory, race_ctx)
    _lose_next_answer(own_emulator, "/v1/checkout/sessions")
    with pytest.raises(StripeOutcomeUnknown):  # Stripe made it; the answer is lost
        await in_tx(factory, _booking(race_ctx, session_id, mentee))
    again = await in_tx(factory, _booking(race_ctx, session_id, mentee))
    with own_emulator.state.lock:
        made = [
            cs
            for cs in own_emulator.state.checkout_sessions.values()
            if cs["metadata"].get("mentee_id") == str(mentee)
        ]
    # One Checkout Session at Stripe: the retry got the first one back, not a second.
    assert [cs["id"] for cs in made] == [again.checkout_session_id]
    assert again.checkout_url == made[0]["url"]
    async with factory() as db:
        assert await db.scalar(select(func.count()).select_from(Booking)) == 1
        assert await count_seats(db, session_id, now=race_ctx.clock.now()) == 1
    # The one seat is this mentee's; another is refused, not given a second seat.
    other = await _mentee(factory, race_ctx)
    with pytest.raises(Exception, match="no seat"):
        await in_tx(factory, _booking(race_ctx, session_id, other))


async def test_a_retry_of_a_failed_booking_retried_after_a_lost_answer_opens_one_checkout(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    session_id = await _session(factory, race_ctx)
    mentee = await _mentee(factory, race_ctx)
    booking = await in_tx(factory, _booking(race_ctx, session_id, mentee))
    async with factory() as db, db.begin():  # its payment failed
        await db.execute(update(Booking).where(Booking.id == booking.id).values(status="failed"))

    async def retry(db: AsyncSession) -> Booking:
        return await retry_booking(
            db,
            booking_id=booking.id,
            actor=Actor.user(mentee, "mentee"),
            gateway=race_ctx.gateway,
            clock=race_ctx.clock,
            settings=race_ctx.settings,
        )

    _lose_next_answer(own_emulator, "/v1/checkout/sessions")
    with pytest.raises(StripeOutcomeUnknown):
        await in_tx(factory, retry)
    again = await in_tx(factory, retry)
    assert again.status == "pending" and again.attempt == 2
    attempts = sorted(cs["metadata"]["attempt"] for cs in _sessions_for(own_emulator, booking.id))
    assert attempts == ["1", "2"]  # the first attempt's, and one for the retry


async def test_a_second_booking_is_not_blocked_behind_a_slow_checkout(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    session_id = await _session(factory, race_ctx)
    first, second = await _mentee(factory, race_ctx), await _mentee(factory, race_ctx)
    slow = Gated(race_ctx.gateway, "create_checkout_session")
    held = asyncio.create_task(in_tx(factory, _booking(race_ctx, session_id, first, slow)))
    await slow.started.wait()  # the first booking is inside its Stripe call now
    other = asyncio.create_task(in_tx(factory, _booking(race_ctx, session_id, second, slow)))
    done, _ = await asyncio.wait({held, other}, timeout=HANG_GUARD, return_when="FIRST_COMPLETED")
    slow.release.set()
    assert other in done and held not in done
    assert other.result().checkout_session_id is not None
    assert (await held).checkout_session_id is not None


async def test_a_payment_refunded_automatically_does_not_block_the_session_meanwhile(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    session_id = await _session(factory, race_ctx)
    mentee, other = await _mentee(factory, race_ctx), await _mentee(factory, race_ctx)
    booking = await in_tx(factory, lambda db: book_for(db, race_ctx, session_id, mentee))
    mark = event_mark(own_emulator)
    pay(own_emulator, booking)
    completed = [e for e in events_since(own_emulator, mark) if e.type.endswith("completed")]
    async with factory() as db, db.begin():  # cancelled before its payment's event came
        await db.execute(update(Booking).where(Booking.id == booking.id).values(status="cancelled"))
    slow = Gated(race_ctx.gateway, "create_refund")
    ctx = HandlerContext(gateway=slow, clock=race_ctx.clock, settings=race_ctx.settings)  # type: ignore[arg-type]
    webhook = asyncio.create_task(
        in_tx(factory, lambda db: on_checkout_paid(db, completed[0], ctx))
    )
    await slow.started.wait()  # the automatic refund is at Stripe
    booked = asyncio.create_task(in_tx(factory, _booking(race_ctx, session_id, other)))
    done, _ = await asyncio.wait(
        {webhook, booked}, timeout=HANG_GUARD, return_when="FIRST_COMPLETED"
    )
    slow.release.set()
    assert booked in done and webhook not in done
    await webhook
    async with factory() as db:
        row = await db.get(Booking, booking.id)
        assert row is not None and row.status == "refunded" and row.amount_refunded == 10000
    with own_emulator.state.lock:
        assert len(own_emulator.state.refunds) == 1


async def test_one_customer_per_mentee_on_every_checkout(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    first_session, second_session = (
        await _session(factory, race_ctx),
        await _session(factory, race_ctx),
    )
    mentee = await _mentee(factory, race_ctx)
    async with factory() as db, db.begin():
        await db.execute(
            update(User).where(User.id == mentee).values(email="returning@example.com")
        )
    _lose_next_answer(own_emulator, "/v1/customers")  # the Customer made, its answer lost
    with pytest.raises(StripeOutcomeUnknown):
        await in_tx(factory, _booking(race_ctx, first_session, mentee))
    one = await in_tx(factory, _booking(race_ctx, first_session, mentee))
    two = await in_tx(factory, _booking(race_ctx, second_session, mentee))
    with own_emulator.state.lock:
        customers = list(own_emulator.state.tables.get("customers", {}).values())
        on_sessions = {
            own_emulator.state.checkout_sessions[b.checkout_session_id]["customer"]
            for b in (one, two)
        }
    assert len(customers) == 1, customers
    assert customers[0]["email"] == "returning@example.com"
    assert customers[0]["metadata"] == {"user_id": str(mentee)}
    assert on_sessions == {customers[0]["id"]}
    async with factory() as db:
        stored = await db.scalar(
            text("SELECT stripe_customer_id FROM users WHERE id = :u"), {"u": mentee}
        )
    assert stored == customers[0]["id"]
    # Paid, the PaymentIntent carries the customer too (Checkout saves the card to it).
    pay(own_emulator, one)
    with own_emulator.state.lock:
        cs = own_emulator.state.checkout_sessions[one.checkout_session_id]
        intent = own_emulator.state.payment_intents[cs["payment_intent"]]
    assert intent["customer"] == customers[0]["id"]


async def test_a_refusal_seen_only_under_the_locks_is_retried_not_refunded_under_them(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plain read said "honour"; under the locks the booking is cancelled (a race).
    No Stripe call is made under the locks: the event fails and its retry refunds."""
    from sessions import payments

    session_id = await _session(factory, race_ctx)
    mentee = await _mentee(factory, race_ctx)
    booking = await in_tx(factory, lambda db: book_for(db, race_ctx, session_id, mentee))
    mark = event_mark(own_emulator)
    pay(own_emulator, booking)
    completed = [e for e in events_since(own_emulator, mark) if e.type.endswith("completed")]
    async with factory() as db, db.begin():
        await db.execute(update(Booking).where(Booking.id == booking.id).values(status="cancelled"))
    real = payments._refusal
    reads: list[str | None] = []

    async def stale_first_read(*args: Any) -> str | None:
        found = await real(*args)
        reads.append(found)
        return None if len(reads) == 1 else found  # the plain read saw it before the cancel

    monkeypatch.setattr(payments, "_refusal", stale_first_read)
    with pytest.raises(payments.PaymentNeedsRefund):
        await in_tx(factory, lambda db: on_checkout_paid(db, completed[0], race_ctx))
    with own_emulator.state.lock:
        assert own_emulator.state.refunds == {}
    monkeypatch.setattr(payments, "_refusal", real)
    await in_tx(factory, lambda db: on_checkout_paid(db, completed[0], race_ctx))  # the retry
    async with factory() as db:
        row = await db.get(Booking, booking.id)
        assert row is not None and row.status == "refunded"
    with own_emulator.state.lock:
        assert [r["amount"] for r in own_emulator.state.refunds.values()] == [10000]
