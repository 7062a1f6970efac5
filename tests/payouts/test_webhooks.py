"""transfer.reversed, payout.paid, payout.failed: recorded once, in order, and shown."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import FrozenClock
from core.inbox import HandlerContext
from core.settings import Settings
from core.stripe_types import StripeEvent
from payouts.models import Payout
from payouts.views import coach_balance, list_bank_payouts, list_payouts
from payouts.webhooks import on_connect_payout, on_transfer_reversed
from tests.payouts.helpers import T0, make_coach, owed, refund_after_payout, trial_balance_is_zero


def ctx() -> HandlerContext:
    return HandlerContext(gateway=None, clock=FrozenClock(T0), settings=Settings())  # type: ignore[arg-type]


def event(
    type: str, obj: dict[str, Any], *, account: str | None = None, created: int = 1
) -> StripeEvent:
    raw = {
        "id": f"evt_{type}_{created}",
        "object": "event",
        "type": type,
        "created": created,
        "data": {"object": obj},
        "account": account,
    }
    return StripeEvent.from_dict(raw)


async def paid_payout(db: AsyncSession, coach: int, amount: int = 8000) -> Payout:
    p = Payout(
        coach_id=coach,
        currency="usd",
        amount=amount,
        status="paid",
        destination="acct_w",
        stripe_transfer_id=f"tr_w{coach}",
        created_at=T0,
        updated_at=T0,
        settled_at=T0,
    )
    db.add(p)
    await db.flush()
    return p


async def test_transfer_reversal_nets_the_debt_left_by_a_refund_after_payout(
    db: AsyncSession,
) -> None:
    coach = await make_coach(db)
    payout = await paid_payout(db, coach)
    await refund_after_payout(db, coach, 3000)
    assert (await owed(db, coach))["available"] == -3000
    transfer = {
        "id": payout.stripe_transfer_id,
        "amount": 8000,
        "amount_reversed": 3000,
        "reversals": {"data": [{"id": "trr_1", "amount": 3000, "created": 5}]},
    }
    for _ in range(2):  # delivered twice: booked once
        await on_transfer_reversed(db, event("transfer.reversed", transfer), ctx())
    assert (await owed(db, coach))["available"] == 0  # the coach owes nothing more
    assert await trial_balance_is_zero(db)
    [view] = await list_payouts(db, coach)
    assert view.reversed_amount == 3000
    [bal] = await coach_balance(db, coach)
    assert bal.paid_out == 5000


async def test_reversal_snapshot_without_list_books_the_growth_of_the_total(
    db: AsyncSession,
) -> None:
    coach = await make_coach(db)
    payout = await paid_payout(db, coach)
    for total in (1000, 1000, 2500, 1000):  # replays and an older snapshot arrive too
        obj = {"id": payout.stripe_transfer_id, "amount": 8000, "amount_reversed": total}
        await on_transfer_reversed(db, event("transfer.reversed", obj), ctx())
    assert (await owed(db, coach))["available"] == 2500  # owed again, paid by the next payout
    await db.refresh(payout)
    assert payout.reversed_amount == 2500


async def test_unknown_transfer_is_ignored(db: AsyncSession) -> None:
    await on_transfer_reversed(
        db, event("transfer.reversed", {"id": "tr_nope", "amount_reversed": 5}), ctx()
    )
    assert (await db.execute(select(Payout))).first() is None


async def test_bank_payouts_recorded_newest_event_wins(db: AsyncSession) -> None:
    coach = await make_coach(db, account="acct_bank1")
    po = {
        "id": "po_1",
        "object": "payout",
        "amount": 5000,
        "currency": "usd",
        "arrival_date": 1_780_000_000,
    }
    await on_connect_payout(
        db,
        event(
            "payout.failed",
            {
                **po,
                "status": "failed",
                "failure_code": "account_closed",
                "failure_message": "The bank account has been closed",
            },
            account="acct_bank1",
            created=20,
        ),
        ctx(),
    )
    await on_connect_payout(
        db, event("payout.paid", {**po, "status": "paid"}, account="acct_bank1", created=10), ctx()
    )
    [bank] = await list_bank_payouts(db, coach)
    assert (bank.status, bank.failure_code, bank.amount) == ("failed", "account_closed", 5000)
    assert "closed" in (bank.failure_message or "")
