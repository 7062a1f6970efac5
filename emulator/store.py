"""The emulator's in-memory state: objects by id, indexes, balances, events, idempotency keys.

One re-entrant lock guards everything. API handlers are short synchronous functions run under it
on the server's event loop, so a request is atomic like a database transaction; tests may read
the store from their own thread (take `store.lock` for consistent multi-field reads).
"""

from __future__ import annotations

import heapq
import random
import string
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.config import Config
from emulator.lists import Index

API_VERSION = "2026-10-28.endive"  # what stripe-python 16.x pins; clients' Stripe-Version wins

_ALPHABET = string.ascii_letters + string.digits

Obj = dict[str, Any]

TABLES = (
    "accounts",
    "checkout_sessions",
    "payment_intents",
    "charges",
    "refunds",
    "transfers",
    "transfer_reversals",
    "balance_transactions",
    "disputes",
    "payouts",
    "events",
)


@dataclass
class IdempotencyRecord:
    fingerprint: str
    status: int
    body: bytes


@dataclass
class Funds:
    available: int = 0
    pending: int = 0


class Store:
    def __init__(self, config: Config, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.config = config
        # Called with each new event id (set by the app: hands it to the webhook dispatcher).
        self.on_event: Callable[[str], None] | None = None
        # Request being served, recorded in events' `request` field.
        self.request_id: str | None = None
        self.request_idempotency_key: str | None = None
        # Ids are random, never derived from the seed and not restarted by reset(): a coachpay
        # database outlives emulator runs and resets, and a repeated acct_/tr_ id would point old
        # rows at new objects. (The seed drives fault injection, where repeatability matters.)
        self._rng = random.Random()
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            if seed is not None:
                self.seed = seed
            self.clock_offset = 0.0
            self._seq = 0
            self.tables: dict[str, dict[str, Obj]] = {name: {} for name in TABLES}
            self.objects: dict[str, Obj] = {}
            self.seq_of: dict[str, int] = {}
            self.indexes: defaultdict[str, Index] = defaultdict(Index)
            # Data Stripe keeps but does not show on the object (line items, PI settings...).
            self.private: dict[str, dict[str, Any]] = {}
            self.platform_funds: dict[str, Funds] = {}
            self.account_funds: dict[str, dict[str, Funds]] = {}
            self._pending_funds: list[tuple[int, int, str]] = []
            self._session_expiry: list[tuple[int, str]] = []
            self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
            # Webhook delivery records by event id (endpoint, status, attempts).
            self.deliveries: dict[str, dict[str, Any]] = {}

    # ---- convenience views for tests ----------------------------------------------------------

    @property
    def accounts(self) -> dict[str, Obj]:
        return self.tables["accounts"]

    @property
    def checkout_sessions(self) -> dict[str, Obj]:
        return self.tables["checkout_sessions"]

    @property
    def payment_intents(self) -> dict[str, Obj]:
        return self.tables["payment_intents"]

    @property
    def charges(self) -> dict[str, Obj]:
        return self.tables["charges"]

    @property
    def refunds(self) -> dict[str, Obj]:
        return self.tables["refunds"]

    @property
    def transfers(self) -> dict[str, Obj]:
        return self.tables["transfers"]

    @property
    def transfer_reversals(self) -> dict[str, Obj]:
        return self.tables["transfer_reversals"]

    @property
    def balance_transactions(self) -> dict[str, Obj]:
        return self.tables["balance_transactions"]

    @property
    def disputes(self) -> dict[str, Obj]:
        return self.tables["disputes"]

    @property
    def payouts(self) -> dict[str, Obj]:
        return self.tables["payouts"]

    @property
    def events(self) -> dict[str, Obj]:
        return self.tables["events"]

    # ---- basics --------------------------------------------------------------------------------

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    def new_id(self, prefix: str, length: int = 24) -> str:
        return prefix + "".join(self._rng.choices(_ALPHABET, k=length))

    def add(self, table: str, obj: Obj, index_keys: tuple[str, ...] = ()) -> Obj:
        self._seq += 1
        obj_id = obj["id"]
        self.tables[table][obj_id] = obj
        self.objects[obj_id] = obj
        self.seq_of[obj_id] = self._seq
        self.indexes[table].add(self._seq, obj_id)
        for key in index_keys:
            self.indexes[key].add(self._seq, obj_id)
        return obj

    def get(self, table: str, obj_id: str) -> Obj | None:
        return self.tables[table].get(obj_id)

    # ---- events --------------------------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        obj: Obj,
        *,
        account: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> Obj:
        data: dict[str, Any] = {"object": clone(obj)}
        if previous:
            data["previous_attributes"] = clone(previous)
        event: Obj = {
            "id": self.new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": self.request_id, "idempotency_key": self.request_idempotency_key},
            "type": event_type,
        }
        if account is not None:
            event["account"] = account
        self.add("events", event, (f"events:type:{event_type}",))
        if self.on_event is not None:
            self.on_event(event["id"])
        return event

    # ---- balances ------------------------------------------------------------------------------

    def funds(self, currency: str) -> Funds:
        return self.platform_funds.setdefault(currency, Funds())

    def account_balance(self, account_id: str, currency: str) -> Funds:
        return self.account_funds.setdefault(account_id, {}).setdefault(currency, Funds())

    def add_balance_transaction(
        self,
        *,
        amount: int,
        currency: str,
        type: str,
        source: str,
        reporting_category: str,
        fee: int = 0,
        fee_description: str = "Stripe processing fees",
        description: str | None = None,
        pending_until: int | None = None,
        from_pending: bool = False,
    ) -> Obj:
        """A platform balance transaction; money is in `pending` until `pending_until`."""
        now = self.now()
        net = amount - fee
        pending = pending_until is not None and pending_until > now
        txn: Obj = {
            "id": self.new_id("txn_"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": pending_until if pending else now,
            "created": now,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": (
                [
                    {
                        "amount": fee,
                        "application": None,
                        "currency": currency,
                        "description": fee_description,
                        "type": "stripe_fee",
                    }
                ]
                if fee
                else []
            ),
            "net": net,
            "reporting_category": reporting_category,
            "source": source,
            "status": "pending" if pending else "available",
            "type": type,
        }
        self.add(
            "balance_transactions",
            txn,
            (f"balance_transactions:type:{type}", f"balance_transactions:source:{source}"),
        )
        funds = self.funds(currency)
        if pending:
            funds.pending += net
            heapq.heappush(self._pending_funds, (txn["available_on"], self._seq, txn["id"]))
        elif from_pending:
            funds.pending += net
        else:
            funds.available += net
        return txn

    def settle_funds(self, *, everything: bool = False) -> int:
        """Pending balance transactions whose `available_on` has come become available."""
        now = self.now()
        settled = 0
        while self._pending_funds and (everything or self._pending_funds[0][0] <= now):
            _, _, txn_id = heapq.heappop(self._pending_funds)
            txn = self.tables["balance_transactions"][txn_id]
            if txn["status"] != "pending":
                continue
            txn["status"] = "available"
            txn["available_on"] = min(txn["available_on"], now)
            funds = self.funds(txn["currency"])
            funds.pending -= txn["net"]
            funds.available += txn["net"]
            settled += 1
        return settled

    # ---- checkout expiry -----------------------------------------------------------------------

    def schedule_expiry(self, session_id: str, expires_at: int) -> None:
        heapq.heappush(self._session_expiry, (expires_at, session_id))

    def due_sessions(self) -> list[str]:
        now = self.now()
        due: list[str] = []
        while self._session_expiry and self._session_expiry[0][0] <= now:
            due.append(heapq.heappop(self._session_expiry)[1])
        return due

    # ---- summary -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {
            "counts": {name: len(table) for name, table in self.tables.items()},
            "platform_balance": {
                cur: {"available": f.available, "pending": f.pending}
                for cur, f in self.platform_funds.items()
            },
            "clock_offset": self.clock_offset,
            "idempotency_keys": len(self.idempotency),
        }


def clone(value: Any) -> Any:
    """Deep copy of JSON-shaped data; several times faster than copy.deepcopy (hot path)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def diff(before: Any, after: Any) -> dict[str, Any]:
    """Stripe's `previous_attributes`: the old values of what changed (nested dicts recursed)."""
    changed: dict[str, Any] = {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return changed
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed[key] = diff(old, new)
        else:
            changed[key] = clone(old)
    return changed
