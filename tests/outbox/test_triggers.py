"""The triggers of migration 0013: an event per state change, in the change's transaction.

Rows are written with plain SQL (as a job's raw statement or a person at psql
would): the triggers must not care who writes. The real flows through the API
and the emulator are in test_flows.py.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from tests.outbox import seed

Factory = async_sessionmaker[AsyncSession]


async def _types(factory: Factory) -> list[str]:
    async with factory() as db:
        return [e.type for e in await seed.events(db)]


async def _world(factory: Factory, clock: FrozenClock) -> tuple[int, int, int]:
    async with factory() as db, db.begin():
        coach = await seed.coach(db, clock.now())
        session = await seed.session(db, coach, clock.now())
        booking = await seed.booking(db, session, coach, clock.now())
    return coach, session, booking


async def test_booking_statuses_emit_and_other_updates_do_not(
    factory: Factory, clock: FrozenClock
) -> None:
    coach, session, booking = await _world(factory, clock)
    steps = [
        "checkout_url = 'https://checkout.test/x'",  # not a status: nothing
        "status = 'failed'",
        "status = 'pending', attempt = 2",  # a retry
        "status = 'paid', paid_at = updated_at, payment_intent_id = 'pi_1'",
        "amount_refunded = 0",  # nothing
    ]
    for change in steps:
        clock.advance(timedelta(minutes=1))
        async with factory() as db, db.begin():
            await db.execute(
                text(f"UPDATE bookings SET {change}, updated_at = :now WHERE id = :b"),
                {"now": clock.now(), "b": booking},
            )
    async with factory() as db:
        events = await seed.events(db)
    assert [e.type for e in events] == [
        "coach.onboarding_updated", "booking.pending", "booking.failed", "booking.pending",
        "booking.paid",
    ]  # fmt: skip
    paid = events[-1]
    assert paid.occurred_at == clock.now() - timedelta(minutes=1)
    assert paid.data["previous_status"] == "pending"
    b = paid.data["booking"]
    assert (b["id"], b["status"], b["amount"], b["currency"], b["coach_id"]) == (
        booking, "paid", 10000, "usd", coach,
    )  # fmt: skip
    assert b["paid_at"].endswith("Z") and b["session_url"] == f"/v1/sessions/{session}"


async def test_a_rolled_back_change_emits_nothing(factory: Factory, clock: FrozenClock) -> None:
    _, session, booking = await _world(factory, clock)
    before = await _types(factory)
    async with factory() as db:
        await db.begin()
        await db.execute(
            text("UPDATE bookings SET status = 'cancelled' WHERE id = :b"), {"b": booking}
        )
        await db.execute(
            text("UPDATE coaching_sessions SET status = 'cancelled' WHERE id = :s"), {"s": session}
        )
        async with factory() as other:  # not visible to anyone before the commit either
            assert await _count(other) == len(before)
        assert await _count(db) == len(before) + 2
        await db.rollback()
    assert await _types(factory) == before


async def _count(db: AsyncSession) -> int:
    return int((await db.execute(text("SELECT count(*) FROM outbox_events"))).scalar_one())


async def test_refunds_partial_then_full_read_the_booking_at_commit(
    factory: Factory, clock: FrozenClock
) -> None:
    _, _, booking = await _world(factory, clock)
    async with factory() as db, db.begin():
        await db.execute(
            text("UPDATE bookings SET status = 'paid', payment_intent_id = 'pi_r' WHERE id = :b"),
            {"b": booking},
        )
    for n, (amount, status) in enumerate([(3000, "partially_refunded"), (7000, "refunded")]):
        async with factory() as db, db.begin():
            tx = await seed.ledger_tx(db, f"refund-test-{n}", clock.now())
            # The refund row first, the booking after (as an ORM flush may order them):
            # the event still describes the booking as committed.
            await db.execute(
                text(
                    "INSERT INTO refunds (booking_id, stripe_refund_id, payment_intent_id, amount, "
                    "currency, platform_fee_part, coach_part, coach_account_kind, source, status, "
                    "ledger_transaction_id, created_at) VALUES (:b, :re, 'pi_r', :a, 'usd', 0, :a, "
                    "'pending', 'api', 'succeeded', :tx, :now)"
                ),
                {"b": booking, "re": f"re_{n}", "a": amount, "tx": tx, "now": clock.now()},
            )
            await db.execute(
                text(
                    "UPDATE bookings SET amount_refunded = amount_refunded + :a, status = :s "
                    "WHERE id = :b"
                ),
                {"a": amount, "s": status, "b": booking},
            )
    async with factory() as db, db.begin():
        await db.execute(
            text("UPDATE refunds SET status = 'failed' WHERE stripe_refund_id = 're_1'")
        )
        await db.execute(
            text("UPDATE bookings SET amount_refunded = 3000, status = 'partially_refunded'")
        )
    async with factory() as db:
        events = [e for e in await seed.events(db) if e.type.startswith("booking.refund")]
    assert [e.type for e in events] == [
        "booking.refunded", "booking.refunded", "booking.refund_failed",
    ]  # fmt: skip
    first, second, failed = (e.data for e in events)
    assert first["refund"]["amount"] == 3000 and first["full"] is False
    assert first["booking"]["amount_refunded"] == 3000
    assert first["booking"]["status"] == "partially_refunded"
    assert second["refund"]["stripe_refund_id"] == "re_1" and second["full"] is True
    assert second["booking"]["status"] == "refunded"
    assert failed["refund"]["status"] == "failed" and failed["booking"]["amount_refunded"] == 3000


async def test_disputes_sessions_accounts(factory: Factory, clock: FrozenClock) -> None:
    coach, session, booking = await _world(factory, clock)
    async with factory() as db, db.begin():
        for cause, detail in (
            ("dispute_opened", '{"dispute": "du_1", "amount": 10000, "coach_part": 8000}'),
            ("dispute_won", '{"dispute": "du_1"}'),
            ("refund:api", "{}"),  # any other audit row: nothing
        ):
            await db.execute(
                text(
                    "INSERT INTO booking_events (booking_id, at, actor_kind, cause, to_status, "
                    "detail) VALUES (:b, :now, 'stripe', :c, 'paid', CAST(:d AS jsonb))"
                ),
                {"b": booking, "now": clock.now(), "c": cause, "d": detail},
            )
        await db.execute(text("UPDATE coaching_sessions SET title = 'Renamed'"))  # nothing
        await db.execute(text("UPDATE coaching_sessions SET status = 'cancelled'"))
        await db.execute(text("UPDATE connect_accounts SET raw = '{\"x\": 1}'"))  # nothing
        await db.execute(text("UPDATE connect_accounts SET status = 'restricted'"))
    async with factory() as db:
        events = (await seed.events(db))[2:]  # after the account and the booking
    assert [e.type for e in events] == [
        "booking.disputed", "booking.dispute_closed", "session.cancelled",
        "coach.onboarding_updated",
    ]  # fmt: skip
    opened, closed, cancelled, account = (e.data for e in events)
    assert opened["dispute"] == {
        "id": "du_1", "status": "opened", "amount": 10000, "coach_part": 8000, "currency": "usd",
    }  # fmt: skip
    assert closed["dispute"]["status"] == "won" and closed["dispute"]["amount"] == 10000
    assert cancelled["session"]["id"] == session and cancelled["session"]["status"] == "cancelled"
    assert account["account"]["coach_id"] == coach
    assert (account["account"]["previous_status"], account["account"]["status"]) == (
        "active", "restricted",
    )  # fmt: skip


async def test_earnings_released_in_bulk_one_event_each(
    factory: Factory, clock: FrozenClock
) -> None:
    coach, _, _ = await _world(factory, clock)
    async with factory() as db, db.begin():
        await db.execute(
            text(
                "INSERT INTO earnings (coach_id, currency, gross, platform_fee, amount, "
                "reduced_before_release, available_at, created_at) "
                "SELECT :c, 'usd', 1000, 200, 800, CASE WHEN g = 1 THEN 300 ELSE 0 END, :now, :now "
                "FROM generate_series(1, 3) g"
            ),
            {"c": coach, "now": clock.now()},
        )
        await db.execute(text("UPDATE earnings SET available_at = available_at"))  # nothing
    async with factory() as db, db.begin():
        await db.execute(
            text(
                "UPDATE earnings SET status = 'available', released_at = :now "
                "WHERE id IN (SELECT id FROM earnings ORDER BY id LIMIT 2)"
            ),
            {"now": clock.now() + timedelta(days=3)},
        )
        await db.execute(text("UPDATE earnings SET payout_id = 7 WHERE status = 'available'"))
        await db.execute(text("UPDATE earnings SET status = 'paid' WHERE status = 'available'"))
    async with factory() as db:
        released = [e for e in await seed.events(db) if e.type == "earning.released"]
    assert [e.data["earning"]["amount"] for e in released] == [500, 800]  # net of the reduction
    assert all(e.occurred_at == clock.now() + timedelta(days=3) for e in released)


async def test_payouts(factory: Factory, clock: FrozenClock) -> None:
    coach, _, _ = await _world(factory, clock)
    insert = (
        "INSERT INTO payouts (coach_id, currency, amount, status, destination, created_at, "
        "updated_at) VALUES (:c, 'usd', :a, 'pending', 'acct_x', :now, :now) RETURNING id"
    )
    async with factory() as db, db.begin():
        paid = await seed.one(db, insert, c=coach, a=5000, now=clock.now())
        await db.execute(text("UPDATE payouts SET attempts = 1, last_error = 'x'"))  # nothing
        await db.execute(
            text(
                "UPDATE payouts SET status = 'paid', stripe_transfer_id = 'tr_1', "
                "settled_at = :now WHERE id = :p"
            ),
            {"p": paid, "now": clock.now()},
        )
    async with factory() as db, db.begin():
        failed = await seed.one(db, insert, c=coach, a=700, now=clock.now())
        await db.execute(
            text("UPDATE payouts SET status = 'waiting_funds' WHERE id = :p"), {"p": failed}
        )
        await db.execute(
            text(
                "UPDATE payouts SET status = 'failed', failure_code = 'account_closed' "
                "WHERE id = :p"
            ),
            {"p": failed},
        )
        await db.execute(
            text("UPDATE payouts SET reversed_amount = 1200 WHERE id = :p"), {"p": paid}
        )
        await db.execute(
            text("UPDATE payouts SET reversed_amount = 1200 WHERE id = :p"), {"p": paid}
        )
    async with factory() as db:
        events = [e for e in await seed.events(db) if e.type.startswith("payout.")]
    assert [(e.type, e.data["payout"]["id"]) for e in events] == [
        ("payout.created", paid), ("payout.paid", paid), ("payout.created", failed),
        ("payout.failed", failed), ("payout.reversed", paid),
    ]  # fmt: skip
    assert events[1].data["payout"]["stripe_transfer_id"] == "tr_1"
    assert events[3].data["payout"]["failure_code"] == "account_closed"
    assert events[4].data["reversal"] == {"amount": 1200, "currency": "usd"}
