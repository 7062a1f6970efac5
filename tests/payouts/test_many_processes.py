"""Two workers and a scheduler-driven "serve" process, all at once, never pay twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from tests.dbutil import ROOT
from tests.payouts.emu import emulator_account, emulator_gateway, fund, ledger_is_consistent
from tests.payouts.helpers import T0, add_earning, make_coach, trial_balance_is_zero

COACHES = 100
EARNINGS = 1000
NOW = T0 + timedelta(days=4)

_COMMON = """
import asyncio, sys
from datetime import datetime
from core.clock import FrozenClock
from core.db import create_engine, session_factory
from core.settings import Settings
from core.stripe_gateway import StripeGateway
db_url, api_base, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
settings = Settings(job_batch_size=37, db_pool_size=4, release_interval_seconds=1,
                    payout_interval_seconds=1)
"""

WORKER = (
    _COMMON
    + """
from payouts.jobs import run_cycle
async def main():
    engine = create_engine(db_url, pool_size=4)
    gw = StripeGateway("sk_test_workers", api_base=api_base, backoff_base=0.01)
    # Until a cycle that got both locks finds nothing left to do (or 60 s).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        r = await run_cycle(
            session_factory(engine), gateway=gw, clock=FrozenClock(now), settings=settings
        )
        if r.release.ran and r.payouts.ran and not r.release.released and not r.payouts.created:
            break
        await asyncio.sleep(0.05)
    await gw.aclose(); await engine.dispose()
asyncio.run(main())
"""
)

SERVE = (
    _COMMON
    + """
from payouts.scheduler import build_scheduler
async def main():
    engine = create_engine(db_url, pool_size=4)
    # The platform's one secret key, as in the workers: Stripe (and the emulator)
    # keeps idempotency keys per API key, and a payout this process sent just
    # before being stopped (6 s, mid-run: it shares the shards) is sent again by
    # a worker with the same key, which must replay the transfer, not make one.
    gw = StripeGateway("sk_test_workers", api_base=api_base, backoff_base=0.01)
    sched = build_scheduler(
        session_factory(engine), gateway=gw, clock=FrozenClock(now), settings=settings
    )
    sched.start()
    await asyncio.sleep(6)
    sched.shutdown(wait=False)
    await asyncio.sleep(0.5)
    await gw.aclose(); await engine.dispose()
asyncio.run(main())
"""
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=5) as s:
        yield s


async def test_two_workers_and_serve_pay_each_coach_and_currency_once(
    tx: AsyncSession, commit_db_url: str, server: EmulatorServer
) -> None:
    server.control("POST", "reset")
    fund(server, currency="usd")
    fund(server, currency="eur")
    gw: StripeGateway = emulator_gateway(server)
    # Half of them paid before in usd (in-transit account there): both reserve paths.
    coaches = [
        await make_coach(tx, account=await emulator_account(gw, server), in_transit=i % 2 == 0)
        for i in range(COACHES)
    ]
    await gw.aclose()
    for i in range(EARNINGS):
        await add_earning(
            tx, coaches[i % COACHES], gross=1000 + i, currency="eur" if i % 3 == 0 else "usd"
        )
    await tx.commit()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [commit_db_url, server.base_url, NOW.isoformat()]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env)  # noqa: ASYNC220
        for code in (WORKER, WORKER, SERVE)
    ]
    for p in procs:
        assert await asyncio.to_thread(p.wait, 120) == 0

    pairs = Counter(
        (t["metadata"]["coach_id"], t["currency"]) for t in server.state.transfers.values()
    )
    assert len(pairs) == 2 * COACHES  # every coach in usd and eur ...
    assert set(pairs.values()) == {1}  # ... exactly once
    owed = await tx.execute(
        text(
            "SELECT a.currency, -sum(s.balance) FROM ledger_accounts a JOIN ledger_balance_slots s "
            "ON s.account_id = a.id WHERE a.owner_type = 'coach' GROUP BY a.currency"
        )
    )
    assert {cur: int(v) for cur, v in owed} == {"usd": 0, "eur": 0}
    paid = await tx.scalar(text("SELECT sum(amount) FROM payouts WHERE status = 'paid'"))
    assert paid == sum(t["amount"] for t in server.state.transfers.values())
    assert await trial_balance_is_zero(tx) and await ledger_is_consistent(tx)
