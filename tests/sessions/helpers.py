"""Sessions test helpers: people, sessions, paying through the emulator, delivering events."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connect.models import ConnectAccount
from connect.service import ensure_profile
from core.clock import FrozenClock
from core.inbox import HandlerContext, HandlerRegistry
from core.settings import Settings
from core.stripe_types import StripeEvent
from core.users import provision_user
from emulator.server import EmulatorServer
from ledger.accounts import AccountRef, Kind, balance, get_account_id
from sessions.booking import book
from sessions.catalog import create_session
from sessions.models import Booking, CoachingSession
from sessions.webhooks import register_handlers

T = TypeVar("T")

_seq = itertools.count(1)


async def make_user(db: AsyncSession, role: str, now: datetime) -> int:
    user = await provision_user(
        db, sub=f"sessions-{role}-{next(_seq)}-{id(db)}", role=role, now=now
    )
    return user.id


async def make_coach(
    db: AsyncSession, settings: Settings, now: datetime, *, charges: bool = True, **profile: Any
) -> int:
    coach_id = await make_user(db, "coach", now)
    p = await ensure_profile(db, user_id=coach_id, settings=settings, now=now)
    for k, v in profile.items():
        setattr(p, k, v)
    db.add(
        ConnectAccount(
            coach_id=coach_id,
            stripe_account_id=f"acct_test{coach_id}x{next(_seq)}",
            charges_enabled=charges,
            payouts_enabled=charges,
            details_submitted=True,
            transfers_capability="active" if charges else "inactive",
            status="active" if charges else "onboarding",
            created_at=now,
            updated_at=now,
        )
    )
    await db.flush()
    return coach_id


async def make_session(
    db: AsyncSession, coach_id: int, clock: FrozenClock, **kw: Any
) -> CoachingSession:
    now = clock.now()
    args: dict[str, Any] = {
        "title": "Career coaching",
        "description": "One hour",
        "starts_at": now + timedelta(days=3),
        "ends_at": now + timedelta(days=3, hours=1),
        "price": 10000,
        "currency": "usd",
        "capacity": 5,
        "refund_window_hours": 24,
    }
    args.update(kw)
    return await create_session(db, coach_id=coach_id, clock=clock, **args)


async def book_for(
    db: AsyncSession, ctx: HandlerContext, session_id: int, mentee_id: int
) -> Booking:
    return await book(
        db,
        session_id=session_id,
        mentee_id=mentee_id,
        gateway=ctx.gateway,
        clock=ctx.clock,
        settings=ctx.settings,
    )


def pay(emulator: EmulatorServer, booking: Booking, outcome: str = "succeeded") -> dict[str, Any]:
    result: dict[str, Any] = emulator.control(
        "POST", f"checkout/sessions/{booking.checkout_session_id}/pay", {"outcome": outcome}
    )
    return result


def event_mark(emulator: EmulatorServer) -> int:
    return len(emulator.state.events)


def events_since(emulator: EmulatorServer, mark: int) -> list[StripeEvent]:
    with emulator.state.lock:
        raw = list(emulator.state.events.values())[mark:]
    return [StripeEvent.from_dict(e) for e in raw]


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()
    register_handlers(reg)
    return reg


async def deliver(db: AsyncSession, ctx: HandlerContext, events: list[StripeEvent]) -> None:
    """What the inbox does for each event, minus its dedup by event id."""
    reg = registry()
    for event in events:
        for handler in reg.handlers_for(event.type):
            async with db.begin_nested():
                await handler(db, event, ctx)


async def deliver_new(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, mark: int
) -> list[StripeEvent]:
    events = events_since(emulator, mark)
    await deliver(db, ctx, events)
    return events


async def paid_booking(
    db: AsyncSession, ctx: HandlerContext, emulator: EmulatorServer, price: int = 10000
) -> tuple[Booking, int, int]:
    """A booking paid through the emulator, its events delivered: (booking, coach, mentee)."""
    now = ctx.clock.now()
    coach = await make_coach(db, ctx.settings, now)
    mentee = await make_user(db, "mentee", now)
    session = await make_session(db, coach, ctx.clock, price=price)
    booking = await book_for(db, ctx, session.id, mentee)
    mark = event_mark(emulator)
    pay(emulator, booking)
    await deliver_new(db, ctx, emulator, mark)
    await db.refresh(booking)
    assert booking.status == "paid"
    return booking, coach, mentee


def make_event(type_: str, obj: dict[str, Any], n: int) -> StripeEvent:
    """A hand-made event (shapes the emulator cannot produce: inquiries, failed refunds)."""
    return StripeEvent.from_dict(
        {
            "id": f"evt_test_{type_}_{n}",
            "object": "event",
            "type": type_,
            "created": 1_700_000_000 + n,
            "livemode": False,
            "data": {"object": obj},
        }
    )


@dataclass
class Platform:
    stripe: int
    fees: int
    processing: int
    disputes: int
    losses: int


async def platform_accounts(db: AsyncSession, currency: str = "usd") -> Platform:
    async def a(kind: Kind) -> int:
        return await get_account_id(db, AccountRef.platform(kind, currency))

    return Platform(
        await a(Kind.STRIPE_BALANCE),
        await a(Kind.FEE_REVENUE),
        await a(Kind.PROCESSING_FEES),
        await a(Kind.DISPUTES),
        await a(Kind.DISPUTE_LOSSES),
    )


async def coach_balance(db: AsyncSession, coach_id: int, kind: Kind, currency: str = "usd") -> int:
    return await balance(db, await get_account_id(db, AccountRef.coach(coach_id, kind, currency)))


async def trial_balance(db: AsyncSession) -> int:
    total = await db.execute(text("SELECT COALESCE(SUM(balance), 0) FROM ledger_balance_slots"))
    return int(total.scalar_one())


async def ledger_snapshot(db: AsyncSession) -> dict[str, Any]:
    """Balances per account (by owner/kind) and the set of transaction keys."""
    rows = await db.execute(
        text(
            "SELECT a.owner_type, a.owner_id, a.kind, a.currency, COALESCE(SUM(s.balance), 0) "
            "FROM ledger_accounts a LEFT JOIN ledger_balance_slots s ON s.account_id = a.id "
            "GROUP BY a.id ORDER BY 1, 2, 3, 4"
        )
    )
    keys = await db.execute(text("SELECT idempotency_key, type FROM ledger_transactions"))
    return {
        "balances": {f"{r[0]}:{r[1]}/{r[2]}/{r[3]}": int(r[4]) for r in rows if int(r[4]) != 0},
        "keys": sorted(f"{k}|{t}" for k, t in keys),
    }


async def count(db: AsyncSession, model: Any) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def in_tx(
    factory: async_sessionmaker[AsyncSession], fn: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """``fn`` on a session of its own, committed at the end (rolled back on an error).
    ``fn`` may commit on the way, as the services that call Stripe do."""
    async with factory() as db:
        result = await fn(db)
        await db.commit()
        return result


class FailingRefunds:
    """A gateway whose ``create_refund`` raises ``error`` (Stripe refusing, or no answer:
    ``StripeRefused`` / ``StripeOutcomeUnknown``); everything else is ``inner``'s."""

    def __init__(self, inner: Any, error: Exception) -> None:
        self.inner, self.error, self.calls = inner, error, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_refund(self, **kw: Any) -> Any:
        self.calls += 1
        raise self.error


def refusing_refunds(inner: Any) -> FailingRefunds:
    """Stripe refuses every refund (a disputed charge, say)."""
    from core.stripe_errors import StripeRefused

    return FailingRefunds(inner, StripeRefused("charge_disputed", "the charge is disputed", 400))
