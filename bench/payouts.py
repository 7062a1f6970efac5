"""Release and pay 100,000 due earnings across 10,000 coaches against the Stripe emulator.

    uv run python -m bench.payouts                 # 100,000 / 10,000, then the 100 req/s run
    uv run python -m bench.payouts --quick         # 10,000 / 1,000, then 1,000 / 100 at 100 req/s
    uv run python -m bench.payouts --earnings 20000 --coaches 2000 --limited-earnings 0

The emulator runs in a process of its own (so its CPU is not ours), with the
platform balance funded and the coaches' Connect accounts (onboarded, transfers
active) put straight into its state at boot: creating 10,000 of them over HTTP
took minutes and measured nothing of ours. Data is bulk-loaded (not timed); then
ONE cycle (release job, then payout job) is timed, as ``coachpay payouts run``
would run it. Printed: seconds (release and payouts apart), Stripe calls made
(the emulator's request counter), calls per second, peak RSS of this process,
the load average, and a ``RESULT bench=payouts ...`` line for bench/all.sh. The
second run limits the emulator to 100 requests/s and shows the run stays within
it: the 429s are answered by the gateway's backoff, every payout ends paid.
Exit 1 if the money does not verify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from bench.common import DEFAULT_URL, scratch_database
from core.clock import FrozenClock
from core.db import create_engine, session_factory
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from emulator.server import EmulatorServer
from ledger.accounts import AccountRef, Kind, get_account_id
from migrations.runner import upgrade
from payouts.jobs import run_payout_job, run_release_job

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BOOT = """
import sys
from bench.payouts import seed_accounts
from emulator.server import EmulatorServer
port, n, ids_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = EmulatorServer(port=port, seed=1)
for cur in ("usd",):
    s.state.funds(cur).available = 10**15
with open(ids_file, "w") as f:
    f.write("\\n".join(seed_accounts(s, n)))
s.serve_forever()
"""


# One more process running the payout job beside this one (``--processes``),
# as a ``coachpay worker`` would: it takes the shards this one has not.
PAYOUT_WORKER = """
import asyncio, json, sys
from datetime import datetime
from core.clock import FrozenClock
from core.db import create_engine, session_factory
from core.settings import Settings
from core.stripe_gateway import StripeGateway
from payouts.jobs import run_payout_job
async def main():
    url, base, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
    engine = create_engine(url, pool_size=10)
    gw = StripeGateway("sk_test_bench", api_base=base, max_retries=6, backoff_base=0.05)
    r = await run_payout_job(
        session_factory(engine), gateway=gw, clock=FrozenClock(now),
        settings=Settings(job_batch_size=500, db_pool_size=10),
        concurrency=int(sys.argv[4]) or None,
    )
    await gw.aclose()
    await engine.dispose()
    print(json.dumps({"ran": r.ran, "shards": r.shards, "paid": r.paid, "errors": r.errors}))
asyncio.run(main())
"""


async def payout_phase(
    factory: Any,
    gw: StripeGateway,
    clock: FrozenClock,
    settings: Settings,
    *,
    db_url: str,
    base: str,
    concurrency: int | None,
    processes: int,
) -> tuple[Any, list[dict[str, Any]]]:
    """The payout job here and in ``processes - 1`` more processes at once."""
    args = [db_url, base, NOW.isoformat(), str(concurrency or 0)]
    extra = [
        subprocess.Popen(  # noqa: ASYNC220 - waited for in a thread below
            [sys.executable, "-c", PAYOUT_WORKER, *args], stdout=subprocess.PIPE
        )
        for _ in range(processes - 1)
    ]
    pay = await run_payout_job(
        factory, gateway=gw, clock=clock, settings=settings, concurrency=concurrency
    )
    others = []
    for proc in extra:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"payout worker process exited {proc.returncode}")
        others.append(json.loads(out.decode().strip().splitlines()[-1]))
    return pay, others


def seed_accounts(server: EmulatorServer, n: int) -> list[str]:
    """``n`` onboarded Express accounts made in the emulator's state, through its own
    handlers (``POST /v1/accounts`` then ``complete_onboarding``) without HTTP."""
    from emulator.resources.accounts import complete_onboarding, create_account
    from emulator.router import Ctx

    params = {
        "type": "express",
        "country": "US",
        "capabilities": {"transfers": {"requested": "true"}},
    }
    ids = []
    with server.state.lock:
        for _ in range(n):
            ctx = Ctx(
                method="POST",
                path="/v1/accounts",
                path_params={},
                params=dict(params),
                headers={},
                query={},
                base_url=server.base_url,
                store=server.state,
                app=server.app,
            )
            acct_id = str(create_account(ctx)["id"])
            complete_onboarding(server.state, server.state.accounts[acct_id])
            ids.append(acct_id)
    return ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(accounts: int, ids_file: str) -> tuple[subprocess.Popen[bytes], str, list[str]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", BOOT, str(port), str(accounts), ids_file])
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            httpx.get(f"{base}/_emulator/config", timeout=1)
            with open(ids_file) as f:
                ids = f.read().split()
            if len(ids) != accounts:
                raise RuntimeError(f"emulator seeded {len(ids)} accounts, not {accounts}")
            return proc, base, ids
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("emulator did not start")


async def load(db_url: str, accounts: list[str], earnings: int) -> None:
    """Users, profiles, Connect accounts, coach ledger accounts, due earnings, and the
    coaches' pending balances posted (one session payment per coach, in bulk)."""
    coaches = len(accounts)
    engine = create_engine(db_url, pool_size=2)
    async with session_factory(engine)() as db, db.begin():
        stripe = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
        await db.execute(
            text(
                "INSERT INTO users (id, sub, role) SELECT g, 'bench-coach-' || g, 'coach' "
                "FROM generate_series(1, :n) g"
            ),
            {"n": coaches},
        )
        await db.execute(
            text(
                "INSERT INTO coach_profiles (user_id, payout_schedule) "
                "SELECT g, 'instant' FROM generate_series(1, :n) g"
            ),
            {"n": coaches},
        )
        await db.execute(
            text(
                "INSERT INTO connect_accounts "
                "(coach_id, stripe_account_id, payouts_enabled, status) "
                "SELECT ord, acct, true, 'active' FROM unnest(CAST(:a AS text[])) "
                "WITH ORDINALITY AS x(acct, ord)"
            ),
            {"a": accounts},
        )
        await db.execute(
            text(
                "INSERT INTO ledger_accounts (owner_type, owner_id, kind, currency) "
                "SELECT 'coach', g, k, 'usd' FROM generate_series(1, :n) g, "
                "unnest(ARRAY['pending', 'available', 'in_transit']) k"
            ),
            {"n": coaches},
        )
        await db.execute(
            text(
                "INSERT INTO ledger_balance_slots (account_id, slot, balance) "
                "SELECT id, 0, 0 FROM ledger_accounts WHERE owner_type = 'coach'"
            )
        )
        # Earnings of 10.00..59.99 coach share, due over the last three days.
        await db.execute(
            text(
                "INSERT INTO earnings (coach_id, currency, gross, platform_fee, amount, "
                "available_at, status, created_at) "
                "SELECT 1 + (g % :n), 'usd', 1250 + (g % 5000) * 1.25, "
                "1250 + (g % 5000) * 1.25 - (1000 + g % 5000), 1000 + g % 5000, "
                ":now - (g % 4320) * interval '1 minute', 'pending', :now "
                "FROM generate_series(1, :e) g"
            ),
            {"n": coaches, "e": earnings, "now": NOW},
        )
        rows = await db.execute(
            text(
                "SELECT e.coach_id, sum(e.amount), a.id FROM earnings e JOIN ledger_accounts a "
                "ON a.owner_type = 'coach' AND a.owner_id = e.coach_id AND a.kind = 'pending' "
                "GROUP BY e.coach_id, a.id"
            )
        )
        batch = [
            {
                "k": f"bench-payment:{coach}",
                "legs": [
                    {"account_id": stripe, "amount": int(total), "currency": "usd"},
                    {"account_id": pending, "amount": -int(total), "currency": "usd"},
                ],
            }
            for coach, total, pending in rows
        ]
        for i in range(0, len(batch), 2000):
            await db.execute(
                text(
                    "SELECT p.* FROM jsonb_to_recordset(CAST(:b AS jsonb)) "
                    "AS x(k TEXT, legs JSONB) "
                    "CROSS JOIN LATERAL ledger_post('session_payment', x.k, :now, x.legs, '{}') p"
                ),
                {"b": json.dumps(batch[i : i + 2000]), "now": NOW},
            )
    await engine.dispose()


def stats(base: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{base}/_emulator/stats", timeout=30).json()
    return result


def stripe_calls(s: dict[str, Any]) -> int:
    return sum(int(v) for k, v in s["requests"].items() if " /v1/" in k)


def emulator_state(base: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{base}/_emulator/state", timeout=30).json()
    return result


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu(factory: Any) -> dict[int, float]:
    """CPU so far of each PostgreSQL backend connected to the scratch database (the
    server runs on this machine): only ours are, so this is PostgreSQL's share."""
    async with factory() as db:
        pids = (
            await db.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        ).scalars()
        return {int(pid): cpu_seconds(int(pid)) for pid in pids}


def backend_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A backend that left during the cycle is missed (a small undercount): the
    # job's connections are pooled and stay until the engine is disposed.
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def timed_cycle(
    db_url: str,
    base: str,
    *,
    until_settled: bool,
    concurrency: int | None,
    emulator_pid: int,
    processes: int = 1,
) -> dict[str, Any]:
    settings = Settings(job_batch_size=500, db_pool_size=10)
    engine = create_engine(db_url, pool_size=10)
    factory = session_factory(engine)
    gw = StripeGateway("sk_test_bench", api_base=base, max_retries=6, backoff_base=0.05)
    clock = FrozenClock(NOW)
    before = stripe_calls(stats(base))
    pg0 = await backend_cpu(factory)
    cpu0, emu0 = time.process_time(), cpu_seconds(emulator_pid)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    release_cpu = payout_cpu = 0.0
    t0 = time.perf_counter()
    cycles = released = 0
    release_s = payout_s = 0.0
    while True:
        # run_cycle's two steps, timed apart.
        t, c = time.perf_counter(), time.process_time()
        rel = await run_release_job(
            factory, clock=clock, settings=settings, concurrency=concurrency
        )
        release_s += time.perf_counter() - t
        release_cpu += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        pay, others = await payout_phase(
            factory,
            gw,
            clock,
            settings,
            db_url=db_url,
            base=base,
            concurrency=concurrency,
            processes=processes,
        )
        payout_s += time.perf_counter() - t
        payout_cpu += time.process_time() - c
        released += rel.released
        if cycles == 0:
            print(
                f"  first cycle {time.perf_counter() - t0:.1f} s (release {release_s:.1f} s, "
                f"payouts {payout_s:.1f} s): {rel} {pay} other processes: {others}",
                flush=True,
            )
        cycles += 1
        async with factory() as db:
            open_ = await db.scalar(
                text("SELECT count(*) FROM payouts WHERE status IN ('pending', 'waiting_funds')")
            )
        if not until_settled or not open_ or cycles >= 20:
            break
    seconds = time.perf_counter() - t0
    cpu, emu_cpu = time.process_time() - cpu0, cpu_seconds(emulator_pid) - emu0
    pg_cpu = backend_delta(pg0, await backend_cpu(factory))
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the extra payout processes
    kids_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    s = stats(base)
    async with factory() as db:
        check = (
            await db.execute(
                text(
                    "SELECT (SELECT count(*) FROM payouts WHERE status = 'paid'), "
                    "(SELECT count(*) FROM payouts WHERE status <> 'paid'), "
                    "(SELECT count(*) FROM earnings WHERE status <> 'paid'), "
                    "(SELECT COALESCE(sum(balance), 0) FROM ledger_balance_slots), "
                    "(SELECT COALESCE(sum(-s.balance), 0) FROM ledger_balance_slots s JOIN "
                    " ledger_accounts a ON a.id = s.account_id WHERE a.owner_type = 'coach')"
                )
            )
        ).one()
    await gw.aclose()
    await engine.dispose()
    calls = stripe_calls(s) - before
    return {
        "seconds": seconds,
        "cpu": cpu,
        "emulator_cpu": emu_cpu,
        "postgres_cpu": pg_cpu,
        "workers_cpu": kids_cpu,
        "release_cpu": release_cpu,
        "payout_cpu": payout_cpu,
        "release_seconds": release_s,
        "payout_seconds": payout_s,
        "cycles": cycles,
        "released": released,
        "calls": calls,
        "calls_per_second": calls / seconds if seconds else 0.0,
        "paid": int(check[0]),
        "not_paid": int(check[1]),
        "earnings_unpaid": int(check[2]),
        "trial_balance": int(check[3]),
        "coach_owed": int(check[4]),
        "transfers": int(emulator_state(base)["counts"]["transfers"]),
        "faults": s["faults"],
    }


async def scenario(
    url: str,
    name: str,
    earnings: int,
    coaches: int,
    *,
    rps: float | None,
    concurrency: int | None = None,
    processes: int = 1,
) -> tuple[bool, dict[str, Any]]:
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base, accounts = start_emulator(coaches, os.path.join(tmp, "accounts"))
    try:
        with scratch_database(url, f"coachpay_bench_payouts_{name}_{os.getpid()}") as db_url:
            await asyncio.to_thread(upgrade, db_url)
            await load(db_url, accounts, earnings)
            print(f"[{name}] setup {time.perf_counter() - t:.1f} s (not timed)", flush=True)
            if rps is not None:
                httpx.post(  # noqa: ASYNC210 - setup, before the timed part
                    f"{base}/_emulator/faults",
                    json={"max_requests_per_second": rps, "paths": ["/v1"]},
                    timeout=10,
                ).raise_for_status()
            load_before = load_average()
            r = await timed_cycle(
                db_url,
                base,
                until_settled=rps is not None,
                concurrency=concurrency,
                emulator_pid=proc.pid,
                processes=processes,
            )
            r["load"] = f"{load_before} -> {load_average()}"
    finally:
        proc.terminate()
        proc.wait(10)
    # Every coach paid exactly once: one paid payout and one emulator transfer each.
    ok = (
        r["paid"] == coaches
        and r["transfers"] == coaches
        and r["not_paid"] == 0
        and r["earnings_unpaid"] == 0
        and r["trial_balance"] == 0
        and r["coach_owed"] == 0
    )
    rate_limited = r["faults"].get("rate_limited", 0)
    print(
        f"[{name}] {earnings:,} earnings / {coaches:,} coaches: {r['seconds']:.1f} s "
        f"(release {r['release_seconds']:.1f} s, payouts {r['payout_seconds']:.1f} s, "
        f"{r['cycles']} cycle(s)), released {r['released']:,}, paid {r['paid']:,} payouts, "
        f"{r['transfers']:,} transfers; Stripe calls {r['calls']:,} = "
        f"{r['calls_per_second']:.0f}/s; 429 answered {rate_limited} "
        f"(accepted {(r['calls'] - rate_limited) / r['seconds']:.0f}/s); "
        f"CPU: this process {r['cpu']:.1f} s (release {r['release_cpu']:.1f} s, payouts "
        f"{r['payout_cpu']:.1f} s), other payout processes {r['workers_cpu']:.1f} s, "
        f"emulator {r['emulator_cpu']:.1f} s, PostgreSQL backends "
        f"{r['postgres_cpu']:.1f} s; "
        f"load average {r['load']}; money verifies: {ok}",
        flush=True,
    )
    return ok, r


TARGET_SECONDS, TARGET_MB = 60, 300


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("COACHPAY_TEST_DATABASE_URL", DEFAULT_URL))
    ap.add_argument("--quick", action="store_true", help="10,000 / 1,000, then 1,000 / 100")
    ap.add_argument("--earnings", type=int, default=None)
    ap.add_argument("--coaches", type=int, default=None)
    ap.add_argument("--limited-earnings", type=int, default=None, help="0 skips that run")
    ap.add_argument("--limited-coaches", type=int, default=None)
    ap.add_argument("--rps", type=float, default=100.0)
    ap.add_argument("--concurrency", type=int, default=None, help="job workers (default: jobs')")
    ap.add_argument(
        "--processes",
        type=int,
        default=1,
        help="processes running the payout job at once (they share its shards)",
    )
    args = ap.parse_args()
    sizes = (10_000, 1_000, 1_000, 100) if args.quick else (100_000, 10_000, 5_000, 500)
    earnings = sizes[0] if args.earnings is None else args.earnings
    coaches = sizes[1] if args.coaches is None else args.coaches
    limited = sizes[2] if args.limited_earnings is None else args.limited_earnings
    limited_coaches = sizes[3] if args.limited_coaches is None else args.limited_coaches
    ok, r = await scenario(
        args.url,
        "zero_latency",
        earnings,
        coaches,
        rps=None,
        concurrency=args.concurrency,
        processes=args.processes,
    )
    zero_peak = peak_mb()
    print(f"peak RSS {zero_peak:.0f} MB (the whole process, setup included)", flush=True)
    if limited:
        limited_ok, _ = await scenario(
            args.url,
            "limited",
            limited,
            limited_coaches,
            rps=args.rps,
            concurrency=args.concurrency,
            processes=args.processes,
        )
        ok = ok and limited_ok
    fast = r["seconds"] < TARGET_SECONDS
    small = zero_peak < TARGET_MB
    print(
        f"release + payouts at {earnings:,} / {coaches:,}: {r['seconds']:.1f} s "
        f"(target < {TARGET_SECONDS} s at 100,000 / 10,000: {'pass' if fast else 'miss'}); "
        f"peak RSS {zero_peak:.0f} MB (target < {TARGET_MB} MB: {'pass' if small else 'miss'})",
        flush=True,
    )
    print(
        f"RESULT bench=payouts earnings={earnings} coaches={coaches} seconds={r['seconds']:.1f} "
        f"release_s={r['release_seconds']:.1f} payouts_s={r['payout_seconds']:.1f} "
        f"calls={r['calls']} calls_per_s={r['calls_per_second']:.0f} peak_mb={zero_peak:.0f} "
        f"processes={args.processes} target_s={'pass' if fast else 'miss'} "
        f"target_mb={'pass' if small else 'miss'} "
        f"load1={os.getloadavg()[0]:.1f} verified={ok}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
