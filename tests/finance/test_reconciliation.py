"""The ledger against Stripe's balance transactions."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.stripe_types import BalanceTransaction
from ledger.reconciliation import reconcile_period
from tests.finance.seed import day, seed


def bt(
    id: str, amount: int, fee: int, type: str, source: str | None, cur: str = "usd"
) -> BalanceTransaction:
    return BalanceTransaction(
        id=id, amount=amount, fee=fee, net=amount - fee, currency=cur, type=type, source=source,
        status="available", available_on=0, created=0, reporting_category=None,
    )  # fmt: skip


def stripe_side() -> list[BalanceTransaction]:
    return [
        bt("txn_A", 10000, 320, "charge", "ch_A"),
        bt("txn_B", 5000, 175, "charge", "ch_B"),
        bt("txn_Br", -2000, 0, "refund", "re_B"),
        bt("txn_C", 3000, 117, "charge", "ch_C"),
        bt("txn_Cd", -3000, 1500, "adjustment", "du_C"),
        bt("txn_tr1", -8000, 0, "transfer", "tr_1"),
        bt("txn_D", 5000, 180, "charge", "ch_D", "jpy"),
    ]


async def test_everything_matches(db: AsyncSession) -> None:
    ids = await seed(db)
    rec = await reconcile_period(db, stripe_side(), start=day(1), end=day(20))
    assert rec.ok, rec
    assert len(rec.matched) == 7
    a = next(m for m in rec.matched if m.key == "ch_A")
    assert set(a.ledger_transaction_ids) == {ids["A"], ids["A-fee"]}
    assert a.ledger_amount == a.stripe_amount == 9680


async def test_differences_are_reported(db: AsyncSession) -> None:
    ids = await seed(db)
    stripe = stripe_side()
    stripe[1] = bt("txn_B", 5000, 176, "charge", "ch_B")  # Stripe took one cent more
    del stripe[3]  # charge C unknown at Stripe
    stripe.append(bt("txn_X", 700, 50, "charge", "ch_X"))  # a charge the ledger never saw
    rec = await reconcile_period(db, stripe, start=day(1), end=day(20))
    assert not rec.ok
    (mismatch,) = rec.amount_mismatches
    assert (mismatch.key, mismatch.difference) == ("ch_B", 1)
    assert [b.id for b in rec.missing_in_ledger] == ["txn_X"]
    assert {s.transaction_id for s in rec.missing_at_stripe} == {ids["C"], ids["C-fee"]}


async def test_dispute_withdrawn_and_reinstated_is_one_group(db: AsyncSession) -> None:
    await seed(db)
    stripe = [*stripe_side(), bt("txn_Cw", 3000, -1500, "adjustment", "du_C")]
    rec = await reconcile_period(db, stripe, start=day(1), end=day(20))
    (mismatch,) = rec.amount_mismatches  # the ledger still shows the dispute as lost
    assert mismatch.key == "du_C"
    assert mismatch.stripe_amount == 0
    assert mismatch.difference == -4500


async def test_posting_outside_the_period_still_links(db: AsyncSession) -> None:
    await seed(db)
    # Stripe's side of A only, the ledger period excluding A's day: still matched by id.
    rec = await reconcile_period(db, stripe_side()[:1], start=day(4), end=day(5))
    assert [m.key for m in rec.matched] == ["ch_A"]
    assert {s.type for s in rec.missing_at_stripe} == {"session_payment", "processing_fee"}
