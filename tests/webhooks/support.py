"""Sending Stripe's events and forged ones through the real webhook endpoints, and
reading back everything money-relevant the app holds."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.bookings_support import Client, Headers, Stripe, book, booking_row

_n = itertools.count(1)
Event = dict[str, Any]


class Wire:
    """Stripe's events (from the emulator) and forged ones, signed with the real secrets."""

    def __init__(self, stripe: Stripe, engine: AsyncEngine) -> None:
        self.stripe, self.engine = stripe, engine

    def mark(self) -> int:
        return len(self.stripe.emulator.state.events)

    def since(self, mark: int, *types: str) -> list[Event]:
        """Stripe's events made since ``mark`` (of ``types``, if given), oldest first."""
        with self.stripe.emulator.state.lock:
            raw = list(self.stripe.emulator.state.events.values())[mark:]
            events = [json.loads(json.dumps(e)) for e in raw]
        self.stripe.mark = max(self.stripe.mark, mark + len(raw))  # flush() skips them
        return [e for e in events if not types or e["type"] in types]

    def forge(self, type_: str, obj: dict[str, Any], *, account: str | None = None) -> Event:
        """What a forger holding the endpoint secret sends: any body, validly signed."""
        event: Event = {
            "id": f"evt_forged{next(_n)}x{time.time_ns()}",
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": type_,
            "data": {"object": obj},
        }
        if account is not None:
            event["account"] = account
        return event

    async def send(self, event: Event) -> None:
        """Deliver one event; it must be accepted and processed (not left failing for retries)."""
        connect = event.get("account") is not None
        path = "/v1/webhooks/stripe/connect" if connect else "/v1/webhooks/stripe"
        r = await self.stripe.client.post(
            path, **self.stripe.signer.delivery(event, connect=connect)
        )
        assert r.status_code == 200, r.text
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT status, last_error FROM webhook_events WHERE stripe_event_id = :e"
                    ),
                    {"e": event["id"]},
                )
            ).one()
        # "ignored": a type no handler takes (payment_intent.created...).
        assert row.status in ("processed", "ignored"), (event["type"], row.status, row.last_error)

    async def send_all(self, events: list[Event], *, times: int = 1) -> None:
        for _ in range(times):
            for event in events:
                await self.send(event)

    async def send_twice(self, events: list[Event]) -> None:
        """Stripe's events delivered again: the same ids (a retry, which the inbox
        dedupes), then the same objects under new event ids, which reach the handlers."""
        await self.send_all(events, times=2)
        await self.send_all([{**e, "id": f"{e['id']}x2"} for e in events])


async def money_state(engine: AsyncEngine) -> dict[str, Any]:
    """Everything a forged event must leave alone: balances, journal, bookings, refunds,
    payouts, bank payouts, pauses, Connect accounts, the audit trail."""
    queries = {
        "balances": "SELECT a.owner_type, a.owner_id, a.kind, a.currency, sum(s.balance) "
        "FROM ledger_accounts a JOIN ledger_balance_slots s ON s.account_id = a.id "
        "GROUP BY 1, 2, 3, 4 HAVING sum(s.balance) <> 0 ORDER BY 1, 2, 3, 4",
        "journal": "SELECT idempotency_key FROM ledger_transactions ORDER BY 1",
        "bookings": "SELECT id, status, amount_refunded, payment_intent_id, charge_id "
        "FROM bookings ORDER BY id",
        "booking_events": "SELECT count(*) FROM booking_events",
        "refunds": "SELECT stripe_refund_id, amount, status FROM refunds ORDER BY 1",
        "earnings": "SELECT id, status, reduced_before_release FROM earnings ORDER BY id",
        "payouts": "SELECT id, status, amount, reversed_amount FROM payouts ORDER BY id",
        "bank_payouts": "SELECT stripe_payout_id, coach_id, status, amount, failure_code "
        "FROM connect_payouts ORDER BY 1",
        "pauses": "SELECT user_id, payouts_paused, payouts_paused_reason FROM coach_profiles "
        "ORDER BY 1",
        "accounts": "SELECT stripe_account_id, status, charges_enabled, payouts_enabled, "
        "transfers_capability, disabled_reason FROM connect_accounts ORDER BY 1",
        "audit": "SELECT count(*) FROM audit_log",
    }
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for name, sql in queries.items():
            out[name] = [tuple(r) for r in await conn.execute(text(sql))]
    return out


async def trial_balance(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        total = await conn.execute(
            text("SELECT COALESCE(sum(balance), 0) FROM ledger_balance_slots")
        )
        return int(total.scalar_one())


async def owed(engine: AsyncEngine, coach_id: int, currency: str = "usd") -> dict[str, int]:
    """What the coach is owed per account kind (coach accounts carry negative balances)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT a.kind, -COALESCE(sum(s.balance), 0) FROM ledger_accounts a "
                "JOIN ledger_balance_slots s ON s.account_id = a.id WHERE a.owner_type = 'coach' "
                "AND a.owner_id = :c AND a.currency = :cur GROUP BY a.kind"
            ),
            {"c": coach_id, "cur": currency},
        )
        found = {str(k): int(v) for k, v in rows}
    return {k: found.get(k, 0) for k in ("pending", "available", "in_transit")}


async def keys_like(engine: AsyncEngine, pattern: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT idempotency_key FROM ledger_transactions WHERE idempotency_key LIKE :p"),
            {"p": pattern},
        )
        return sorted(str(k) for k in rows.scalars())


def stripe_object(stripe: Stripe, table: str, obj_id: str) -> dict[str, Any]:
    """A copy of the emulator's object: the body a forger starts from."""
    with stripe.emulator.state.lock:
        found: dict[str, Any] = json.loads(json.dumps(stripe.emulator.state.tables[table][obj_id]))
    return found


async def paid_booking(
    client: Client, stripe: Stripe, session_id: int, headers: Headers
) -> dict[str, Any]:
    """A booking paid through Checkout (its events delivered): the booking as created."""
    booking = await book(client, session_id, headers)
    await stripe.pay(booking["checkout_session_id"])
    assert (await booking_row(client, booking["id"], headers))["status"] == "paid"
    return booking


def pay(stripe: Stripe, booking: dict[str, Any], outcome: str = "succeeded") -> None:
    """Pay at Stripe without delivering the events."""
    path = f"checkout/sessions/{booking['checkout_session_id']}/pay"
    stripe.emulator.control("POST", path, {"outcome": outcome})
