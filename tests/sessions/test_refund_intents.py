"""Refund intents with real commits: a retried request never refunds twice.

Each request runs on a session of its own (``in_tx``), as an API replica
would; Stripe is the module's private emulator, its faults injected on the
next refund request. Stripe's count of refunds is the truth asserted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import session_factory
from core.errors import Conflict
from core.inbox import HandlerContext
from core.stripe_errors import StripeOutcomeUnknown
from emulator.server import EmulatorServer
from sessions.audit import Actor
from sessions.models import Booking, Refund, RefundIntent
from sessions.refund_intents import (
    REPLAY_WINDOW,
    STALE_AFTER,
    IdempotencyKeyReused,
    RefundInProgress,
)
from sessions.refunds import refund_booking, request_refund
from tests.sessions.helpers import (
    FailingRefunds,
    book_for,
    deliver,
    event_mark,
    events_since,
    in_tx,
    make_coach,
    make_session,
    make_user,
    pay,
    trial_balance,
)


async def _paid(
    factory: async_sessionmaker[AsyncSession], ctx: HandlerContext, emulator: EmulatorServer
) -> tuple[int, int]:
    """A paid booking (its events delivered), committed: (booking id, mentee id)."""

    async def setup(db: AsyncSession) -> tuple[Booking, int]:
        now = ctx.clock.now()
        coach = await make_coach(db, ctx.settings, now)
        mentee = await make_user(db, "mentee", now)
        session = await make_session(db, coach, ctx.clock)
        return await book_for(db, ctx, session.id, mentee), mentee

    booking, mentee = await in_tx(factory, setup)
    mark = event_mark(emulator)
    pay(emulator, booking)
    await in_tx(factory, lambda db: deliver(db, ctx, events_since(emulator, mark)))
    return booking.id, mentee


def _refund(
    ctx: HandlerContext, booking_id: int, actor: Actor, gateway: Any = None, **kw: Any
) -> Callable[[AsyncSession], Awaitable[Refund]]:
    async def run(db: AsyncSession) -> Refund:
        return await refund_booking(
            db,
            booking_id=booking_id,
            actor=actor,
            gateway=gateway or ctx.gateway,
            clock=ctx.clock,
            **kw,
        )

    return run


def _stripe_refunds(emulator: EmulatorServer) -> list[int]:
    with emulator.state.lock:
        return sorted(r["amount"] for r in emulator.state.refunds.values())


def _lose_next_refund_answer(emulator: EmulatorServer) -> None:
    """Stripe makes the next refund, and the connection drops before its answer."""
    emulator.control(
        "POST",
        "faults/next",
        {"path_prefix": "/v1/refunds", "method": "POST", "faults": ["drop_after_commit"]},
    )


async def _deliver_refund_events(
    factory: async_sessionmaker[AsyncSession],
    ctx: HandlerContext,
    emulator: EmulatorServer,
    mark: int,
) -> None:
    events = [e for e in events_since(emulator, mark) if e.type.startswith(("refund.", "charge."))]
    assert events, "Stripe sent no refund events"
    await in_tx(factory, lambda db: deliver(db, ctx, events))


class DatabaseGoneAfterRefund:
    """Stripe makes the refund; the database connection dies as its answer arrives."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_refund(self, **kw: Any) -> Any:
        await self.inner.create_refund(**kw)
        raise sqlalchemy.exc.OperationalError(
            "UPDATE", {}, Exception("server closed the connection")
        )


@pytest.fixture
def factory(clean_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(clean_engine)


@pytest.mark.parametrize("fault", ["answer_lost", "database_gone"])
async def test_retry_after_a_lost_answer_and_the_webhook_refunds_once(
    fault: str,
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    """The attack: Stripe refunded, the request answered 503, the refund.created webhook
    booked the refund, and the identical retry (no Idempotency-Key) refunded again."""
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    mark = event_mark(own_emulator)
    if fault == "answer_lost":
        _lose_next_refund_answer(own_emulator)
        first = _refund(race_ctx, booking_id, me, amount=3000)
        with pytest.raises(StripeOutcomeUnknown):
            await in_tx(factory, first)
    else:
        gone = DatabaseGoneAfterRefund(race_ctx.gateway)
        with pytest.raises(sqlalchemy.exc.OperationalError):
            await in_tx(factory, _refund(race_ctx, booking_id, me, gone, amount=3000))
    assert _stripe_refunds(own_emulator) == [3000]
    await _deliver_refund_events(factory, race_ctx, own_emulator, mark)

    again = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=3000))
    assert _stripe_refunds(own_emulator) == [3000]  # exactly one refund at Stripe
    assert again.amount == 3000
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.amount_refunded == 3000
        assert await db.scalar(select(func.count()).select_from(Refund)) == 1
        assert await trial_balance(db) == 0


async def test_retry_before_the_webhook_replays_the_same_stripe_refund(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    _lose_next_refund_answer(own_emulator)
    with pytest.raises(StripeOutcomeUnknown):
        await in_tx(factory, _refund(race_ctx, booking_id, me))
    async with factory() as db:
        intent = (await db.execute(select(RefundIntent))).scalar_one()
        assert (intent.status, intent.amount, intent.requested_amount) == ("open", 10000, None)

    async def retry(db: AsyncSession) -> Any:
        return await request_refund(
            db, booking_id=booking_id, actor=me, gateway=race_ctx.gateway, clock=race_ctx.clock
        )

    answer = await in_tx(factory, retry)
    assert answer.replayed and answer.refund.amount == 10000
    assert _stripe_refunds(own_emulator) == [10000]
    with own_emulator.state.lock:
        made = next(iter(own_emulator.state.refunds.values()))
    assert made["metadata"]["refund_intent"] == str(intent.id)
    # The settled outcome again, not a second refund (nor a 409 for a refunded booking).
    assert (await in_tx(factory, retry)).refund.id == answer.refund.id
    async with factory() as db:
        settled = await db.get(RefundIntent, intent.id)
        assert settled is not None and settled.status == "succeeded"
        assert settled.stripe_refund_id == answer.refund.stripe_refund_id


async def test_the_same_amount_twice_on_purpose(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    """Without a key, the same amount by the same person within the window is the same
    request; distinct keys, another reason, or a later request make a second refund."""
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    first = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000))
    same = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000))
    assert same.id == first.id and _stripe_refunds(own_emulator) == [1000]
    keyed = [
        await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000, client_key=k))
        for k in ("k-1", "k-2")
    ]
    assert len({first.id, *(r.id for r in keyed)}) == 3
    other = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000, reason="again"))
    assert other.id not in {first.id, *(r.id for r in keyed)}
    race_ctx.clock.advance(REPLAY_WINDOW + timedelta(seconds=1))  # type: ignore[attr-defined]
    later = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000))
    assert later.id != first.id
    assert _stripe_refunds(own_emulator) == [1000] * 5
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.amount_refunded == 5000


async def test_a_client_key_reused_with_another_body_is_refused(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    first = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000, client_key="r1"))
    for kw in ({"amount": 2000}, {"amount": 1000, "reason": "other"}, {}):
        with pytest.raises(IdempotencyKeyReused):
            await in_tx(factory, _refund(race_ctx, booking_id, me, client_key="r1", **kw))
    admin = Actor.user(
        await in_tx(factory, lambda db: make_user(db, "admin", race_ctx.clock.now())), "admin"
    )
    with pytest.raises(IdempotencyKeyReused):  # someone else's key
        await in_tx(factory, _refund(race_ctx, booking_id, admin, amount=1000, client_key="r1"))
    replay = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000, client_key="r1"))
    assert replay.id == first.id and _stripe_refunds(own_emulator) == [1000]


async def test_a_refusal_is_replayed_under_its_key_and_retried_without_one(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    from core.stripe_errors import StripeRefused

    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    refusing = FailingRefunds(race_ctx.gateway, StripeRefused("charge_disputed", "disputed", 400))
    with pytest.raises(Conflict, match="disputed"):
        await in_tx(factory, _refund(race_ctx, booking_id, me, refusing, client_key="x"))
    with pytest.raises(Conflict, match="disputed"):  # the same answer, Stripe not asked again
        await in_tx(factory, _refund(race_ctx, booking_id, me, client_key="x"))
    assert refusing.calls == 1
    # Without a key a refusal is not "the same request": nothing moved, so it is tried anew.
    with pytest.raises(Conflict):
        await in_tx(factory, _refund(race_ctx, booking_id, me, refusing))
    assert refusing.calls == 2
    made = await in_tx(factory, _refund(race_ctx, booking_id, me))
    assert made.amount == 10000 and _stripe_refunds(own_emulator) == [10000]


async def test_another_refund_while_one_is_open_waits_then_the_stale_one_is_resolved(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    # Stripe never hears of the first request (the call fails before it is sent).
    unknown = FailingRefunds(race_ctx.gateway, StripeOutcomeUnknown("connection refused"))
    with pytest.raises(StripeOutcomeUnknown):
        await in_tx(factory, _refund(race_ctx, booking_id, me, unknown, amount=4000))
    with pytest.raises(RefundInProgress):  # a different amount while it is open: 409
        await in_tx(factory, _refund(race_ctx, booking_id, me, amount=2000))
    race_ctx.clock.advance(STALE_AFTER)  # type: ignore[attr-defined]
    # Now the open intent is looked up at Stripe (not sent again): never made, so closed.
    made = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=2000))
    assert made.amount == 2000 and _stripe_refunds(own_emulator) == [2000]
    async with factory() as db:
        stale = (await db.execute(select(RefundIntent).order_by(RefundIntent.id))).scalars().first()
        assert stale is not None and stale.status == "failed" and "never" in (stale.error or "")


async def test_a_stale_intent_that_stripe_made_is_booked_not_sent_again(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    _lose_next_refund_answer(own_emulator)
    with pytest.raises(StripeOutcomeUnknown):
        await in_tx(factory, _refund(race_ctx, booking_id, me, amount=4000))
    race_ctx.clock.advance(STALE_AFTER)  # type: ignore[attr-defined]
    # Its webhook lost too; the same request later finds the refund at Stripe.
    again = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=4000))
    assert again.amount == 4000 and _stripe_refunds(own_emulator) == [4000]
    async with factory() as db:
        booking = await db.get(Booking, booking_id)
        assert booking is not None and booking.amount_refunded == 4000


async def test_the_replay_window_is_a_setting(
    factory: async_sessionmaker[AsyncSession],
    race_ctx: HandlerContext,
    own_emulator: EmulatorServer,
) -> None:
    """COACHPAY_REFUND_REPLAY_WINDOW_MINUTES=5: the same request 10 minutes later is new."""
    from core.settings import load_settings

    short = load_settings(refund_replay_window_minutes=5)
    booking_id, mentee = await _paid(factory, race_ctx, own_emulator)
    me = Actor.user(mentee, "mentee")
    first = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000, settings=short))
    race_ctx.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    default = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000))
    assert default.id == first.id  # within the default hour: the same request
    later = await in_tx(factory, _refund(race_ctx, booking_id, me, amount=1000, settings=short))
    assert later.id != first.id and _stripe_refunds(own_emulator) == [1000, 1000]
