"""The in-process Stripe emulator for payout tests: accounts ready for transfers, funds."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer

_n = itertools.count(1)


def emulator_gateway(server: EmulatorServer, **kw: Any) -> StripeGateway:
    opts: dict[str, Any] = {"max_retries": 3, "backoff_base": 0.0, "timeout": 5.0, **kw}
    return StripeGateway("sk_test_payouts", api_base=server.base_url, **opts)


async def emulator_account(gateway: StripeGateway, server: EmulatorServer) -> str:
    acct = await gateway.create_account(
        email=None, country="US", metadata={}, idempotency_key=f"test-acct:{next(_n)}:{id(server)}"
    )
    server.control("POST", f"accounts/{acct.id}/complete_onboarding")
    return acct.id


def fund(server: EmulatorServer, amount: int = 10**12, currency: str = "usd") -> None:
    with server.state.lock:
        server.state.funds(currency).available += amount


def transfers_for(server: EmulatorServer, *, payout_id: int | None = None) -> list[dict[str, Any]]:
    with server.state.lock:
        found = list(server.state.transfers.values())
    if payout_id is None:
        return found
    return [t for t in found if t["metadata"].get("payout_id") == str(payout_id)]


async def ledger_is_consistent(db: AsyncSession) -> bool:
    """Every journal transaction balances and the cached balances equal the entries."""
    unbalanced = await db.scalar(
        text(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries "
            "GROUP BY transaction_id, currency HAVING sum(amount) <> 0) x"
        )
    )
    drift = await db.scalar(
        text(
            "SELECT count(*) FROM ledger_balance_slots s WHERE s.balance <> COALESCE("
            "(SELECT sum(amount) FROM ledger_entries e WHERE e.account_id = s.account_id "
            "AND e.slot = s.slot), 0)"
        )
    )
    return unbalanced == 0 and drift == 0
