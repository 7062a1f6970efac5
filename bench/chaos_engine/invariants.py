"""The money checks after a drained run. Each returns violations as text; none expected.

What the ledger says is compared with what the other tables and Stripe (the
emulator's state) say, derived independently where there is a second source:
refund and dispute parts of a coach's balance come from Stripe's refunds and
disputes, split with the same rule (core.money.refund_split), not from our rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import text

from core.money import refund_split
from core.stripe_types import BalanceTransaction
from ledger.reconciliation import reconcile_period
from payouts.schedule import is_due
from sessions.cancellation import bookings_owed

from .world import World


async def _rows(world: World, sql: str, **params: Any) -> list[Any]:
    async with world.factory() as db:
        return list((await db.execute(text(sql), params)).all())


def _stripe(world: World) -> dict[str, Any]:
    store = world.env.emulator.state
    with store.lock:
        return {
            "transfers": [dict(t) for t in store.transfers.values()],
            "refunds": [dict(r) for r in store.refunds.values()],
            "disputes": [dict(d) for d in store.disputes.values()],
            "bts": [dict(b) for b in store.balance_transactions.values()],
            "funds": {c: f.available + f.pending for c, f in store.platform_funds.items()},
            "available": {c: f.available for c, f in store.platform_funds.items()},
        }


async def trial_balance(world: World) -> list[str]:
    out = [
        f"trial balance {cur}: {total} (not 0)"
        for cur, total in await _rows(
            world,
            "SELECT a.currency, sum(s.balance) FROM ledger_balance_slots s "
            "JOIN ledger_accounts a ON a.id = s.account_id GROUP BY 1 HAVING sum(s.balance) <> 0",
        )
    ]
    out += [
        f"account {a}: cached balance {b} but entries sum to {e}"
        for a, b, e in await _rows(
            world,
            "SELECT a.id, (SELECT COALESCE(sum(balance), 0) FROM ledger_balance_slots "
            "WHERE account_id = a.id) b, (SELECT COALESCE(sum(amount), 0) FROM ledger_entries "
            "WHERE account_id = a.id) e FROM ledger_accounts a",
        )
        if b != e
    ]
    return out


async def transfers_match_payouts(world: World, stripe: dict[str, Any]) -> list[str]:
    payouts = {
        int(r[0]): r
        for r in await _rows(
            world, "SELECT id, status, amount, stripe_transfer_id, destination FROM payouts"
        )
    }
    out: list[str] = []
    by_payout: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tr in stripe["transfers"]:
        raw = (tr.get("metadata") or {}).get("payout_id", "")
        if not raw.isdigit() or int(raw) not in payouts:
            out.append(f"transfer {tr['id']} ({tr['amount']}) matches no payout")
            continue
        by_payout[int(raw)].append(tr)
    for pid, trs in by_payout.items():
        _, status, amount, tr_id, dest = payouts[pid]
        if len(trs) != 1:
            out.append(f"payout {pid}: {len(trs)} transfers at Stripe")
        for tr in trs:
            if status != "paid" or tr_id != tr["id"]:
                out.append(f"payout {pid} ({status}, {tr_id}) but Stripe made {tr['id']}")
            if tr["amount"] != amount or tr["destination"] != dest:
                out.append(f"payout {pid}: {amount} to {dest}, transfer {tr['amount']}")
    for pid, (_, status, _, _, _) in payouts.items():
        if status == "paid" and pid not in by_payout:
            out.append(f"payout {pid} is paid but Stripe has no transfer for it")
    for pid, amount, cur in await _rows(
        world, "SELECT id, amount, currency FROM payouts WHERE status = 'waiting_funds'"
    ):
        if amount <= stripe["available"].get(cur, 0):
            out.append(f"payout {pid} waits for funds, but Stripe has {cur} {amount} available")
    return out


async def no_payout_missing(world: World) -> list[str]:
    """Every eligible coach owed at least their minimum was paid, or the reason is recorded."""
    rows = await _rows(
        world,
        "SELECT a.owner_id, a.currency, a.kind, -COALESCE(sum(s.balance), 0) "
        "FROM ledger_accounts a LEFT JOIN ledger_balance_slots s ON s.account_id = a.id "
        "WHERE a.owner_type = 'coach' GROUP BY 1, 2, 3",
    )
    owed: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    for coach, cur, kind, amount in rows:
        owed[(int(coach), cur)][kind] = int(amount)
    out: list[str] = []
    now = world.clock.now()
    for (coach, cur), kinds in owed.items():
        info = await _rows(
            world,
            "SELECT p.payouts_paused, p.payout_schedule, "
            "COALESCE((p.minimum_payout ->> :cur)::bigint, 0), ca.payouts_enabled, "
            "(SELECT max(created_at) FROM payouts o WHERE o.coach_id = p.user_id "
            " AND o.currency = :cur AND o.status <> 'failed'), "
            "(SELECT COALESCE(sum(amount), 0) FROM payouts o WHERE o.coach_id = p.user_id "
            " AND o.currency = :cur AND o.status IN ('pending', 'waiting_funds')), "
            "(SELECT count(*) FROM payouts o WHERE o.coach_id = p.user_id "
            " AND o.currency = :cur AND o.status = 'waiting_funds') "
            "FROM coach_profiles p JOIN connect_accounts ca ON ca.coach_id = p.user_id "
            "WHERE p.user_id = :c",
            c=coach,
            cur=cur,
        )
        paused, schedule, minimum, enabled, last, open_amount, waiting = info[0]
        if kinds.get("in_transit", 0) != open_amount:
            out.append(
                f"coach {coach} {cur}: in transit {kinds.get('in_transit', 0)} "
                f"but open payouts {open_amount}"
            )
        available = kinds.get("available", 0)
        if available <= 0 or available < minimum or paused or not enabled or waiting:
            continue
        if is_due(schedule, last_payout_at=last, now=now):
            out.append(f"coach {coach} {cur}: {available} available and due, but no payout")
    return out


async def coach_balances(world: World, stripe: dict[str, Any]) -> list[str]:
    """-(pending + available + in_transit) = earnings - refunds - disputes - payouts."""
    bookings = {
        r[0]: r
        for r in await _rows(
            world,
            "SELECT b.payment_intent_id, b.amount, b.fee_bps, b.coach_id, b.currency "
            "FROM bookings b JOIN earnings e ON e.booking_id = b.id",
        )
    }
    expected: dict[tuple[int, str], int] = defaultdict(int)
    for coach, cur, amount in await _rows(
        world, "SELECT coach_id, currency, sum(amount) FROM earnings GROUP BY 1, 2"
    ):
        expected[(coach, cur)] += int(amount)
    refunded: dict[str, int] = defaultdict(int)
    for re in sorted(stripe["refunds"], key=lambda r: (r["created"], r["id"])):
        b = bookings.get(re.get("payment_intent"))
        if b is None or re.get("status") != "succeeded":
            continue
        _, gross, bps, coach, cur = b
        amount = min(re["amount"], gross - refunded[b[0]])
        if amount <= 0:
            continue
        parts = refund_split(
            original_gross=gross, bps=bps, refunded_before=refunded[b[0]], refund=amount
        )
        refunded[b[0]] += amount
        expected[(coach, cur)] -= parts.coach_share
    for du in stripe["disputes"]:
        b = bookings.get(du.get("payment_intent"))
        if b is None or du.get("status") == "won":
            continue
        _, gross, bps, coach, cur = b
        amount = min(du["amount"], gross)
        parts = refund_split(
            original_gross=gross, bps=bps, refunded_before=gross - amount, refund=amount
        )
        expected[(coach, cur)] -= parts.coach_share
    for coach, cur, paid, reversed_ in await _rows(
        world,
        "SELECT coach_id, currency, sum(amount) FILTER (WHERE status = 'paid'), "
        "sum(reversed_amount) FROM payouts GROUP BY 1, 2",
    ):
        expected[(coach, cur)] -= int(paid or 0) - int(reversed_ or 0)
    actual: dict[tuple[int, str], int] = defaultdict(int)
    for coach, cur, owed in await _rows(
        world,
        "SELECT a.owner_id, a.currency, -COALESCE(sum(s.balance), 0) FROM ledger_accounts a "
        "LEFT JOIN ledger_balance_slots s ON s.account_id = a.id "
        "WHERE a.owner_type = 'coach' GROUP BY 1, 2",
    ):
        actual[(int(coach), cur)] = int(owed)
    return [
        f"coach {coach} {cur}: balance {actual.get((coach, cur), 0)} "
        f"but earnings - refunds - disputes - payouts = {expected.get((coach, cur), 0)}"
        for coach, cur in sorted(set(expected) | set(actual))
        if actual.get((coach, cur), 0) != expected.get((coach, cur), 0)
    ]


async def ledger_matches_stripe(world: World, stripe: dict[str, Any]) -> list[str]:
    cash = {
        cur: int(total)
        for cur, total in await _rows(
            world,
            "SELECT a.currency, COALESCE(sum(s.balance), 0) FROM ledger_accounts a "
            "JOIN ledger_balance_slots s ON s.account_id = a.id "
            "WHERE a.owner_type = 'platform' AND a.kind = 'stripe_balance' GROUP BY 1",
        )
    }
    out = [
        f"stripe_balance {cur}: ledger {cash.get(cur, 0)}, Stripe {stripe['funds'].get(cur, 0)}"
        for cur in sorted(set(cash) | set(stripe["funds"]))
        if cash.get(cur, 0) != stripe["funds"].get(cur, 0)
    ]
    bts = [BalanceTransaction.from_dict(b) for b in stripe["bts"]]
    async with world.factory() as db:
        rec = await reconcile_period(db, bts, start=None, end=None)
    out += [
        f"balance transaction {bt.id} ({bt.type} {bt.net}) not in the ledger"
        for bt in rec.missing_in_ledger
    ]
    out += [
        f"{m.key}: ledger {m.ledger_amount} vs Stripe {m.stripe_amount}"
        for m in rec.amount_mismatches
    ]
    out += [
        f"ledger transaction {s.transaction_id} ({s.type} {s.cash}) not at Stripe"
        for s in rec.missing_at_stripe
    ]
    return out


async def inbox_settled(world: World) -> list[str]:
    """Every event processed or ignored, or parked: settled with a person (the admin's
    list and replay), which needs the reason it was parked for."""
    return [
        f"webhook {ev} ({typ}) still {status} after the drain: {err}"
        if status != "parked"
        else f"webhook {ev} ({typ}) parked without a reason"
        for ev, typ, status, err in await _rows(
            world,
            "SELECT stripe_event_id, type, status, last_error FROM webhook_events "
            "WHERE status IN ('pending', 'failed')"
            " OR (status = 'parked' AND coalesce(last_error, '') = '')",
        )
    ]


async def cancelled_settled(world: World) -> list[str]:
    """Every booking of a cancelled session closed or refunded, unless Stripe refused it."""
    async with world.factory() as db:
        owed = await bookings_owed(db, limit=100)
    return [f"booking {b} of a cancelled session still owed after the drain" for b in owed]


async def check_all(world: World) -> list[tuple[str, str]]:
    stripe = _stripe(world)
    found: list[tuple[str, str]] = []
    for name, violations in (
        ("trial_balance", await trial_balance(world)),
        ("transfer_payout_match", await transfers_match_payouts(world, stripe)),
        ("payout_missing", await no_payout_missing(world)),
        ("coach_balance", await coach_balances(world, stripe)),
        ("ledger_vs_stripe", await ledger_matches_stripe(world, stripe)),
        ("inbox_settled", await inbox_settled(world)),
        ("cancelled_settled", await cancelled_settled(world)),
    ):
        found += [(name, v) for v in violations]
    return found
