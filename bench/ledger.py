"""Ledger posting throughput against pgbench TPC-B, and a hot coach against spread coaches.

Run from the repository root: ``uv run python -m bench.ledger [--quick]``
(see bench/README.md). Each payment is a session-payment split (3 legs, its
own idempotency key) in its own database transaction. Two client paths:

- lean: a raw psycopg connection in autocommit, one prepared
  ``SELECT ... FROM ledger_post(...)``: one round trip, one implicit
  transaction (the deferred balance trigger still runs at its commit);
- session: the project's path, ``ledger.posting.post`` in an AsyncSession
  from ``core.db`` followed by ``commit()``.

Client work runs in one spawned process per core with several asyncio
connections each, so one Python process is not what is measured at 16
workers. The output reports the client's CPU share to show how close it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

if __name__ == "__main__" and not __package__:
    # Run as a file, this module would shadow the project's ``ledger`` package.
    raise SystemExit("run it from the repository root: uv run python -m bench.ledger")

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bench import common
from core.db import create_engine, session_factory
from core.money import split
from ledger.accounts import AccountRef, Kind, get_account_id
from ledger.posting import Leg, TxType, post

OCCURRED_AT = datetime(2026, 1, 1, tzinfo=UTC)
FEE_BPS = 2000
LEAN_SQL = "SELECT transaction_id, created FROM ledger_post(%s, %s, %s, %s::jsonb, %s::jsonb)"


@dataclass(frozen=True)
class Accounts:
    stripe: int
    fees: int
    spread: list[tuple[int, int]]  # (coach id, pending account id), 1,000 coaches
    hot: list[tuple[int, int]]  # one coach, pending in one slot (the design today)
    hot_slotted: list[tuple[int, int]]  # one coach, pending spread over --coach-slots


@dataclass(frozen=True)
class Spec:
    url: str
    path: str  # "lean" | "session"
    stripe: int
    fees: int
    coaches: list[tuple[int, int]]
    conns: int
    start_at: float  # wall clock, shared by every process of one point
    seconds: float
    tag: str


@dataclass
class Tally:
    count: int = 0
    gross: int = 0
    fees: int = 0
    coach_share: Counter[int] = field(default_factory=Counter)  # by pending account id
    cpu: float = 0.0
    late: float = 0.0

    def add(self, other: Tally) -> None:
        self.count += other.count
        self.gross += other.gross
        self.fees += other.fees
        self.coach_share.update(other.coach_share)
        self.cpu += other.cpu
        self.late = max(self.late, other.late)


async def _run_spec(spec: Spec) -> Tally:
    tally = Tally()
    rng = random.Random(f"{spec.tag}:{os.getpid()}")
    lean = spec.path == "lean"
    conns: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
    engine = None
    if lean:
        for _ in range(spec.conns):
            conns.append(
                await psycopg.AsyncConnection.connect(
                    spec.url, autocommit=True, prepare_threshold=0
                )
            )
    else:
        engine = create_engine(spec.url, pool_size=spec.conns)
        # Open the pool's connections before the clock starts.
        held = [await engine.connect() for _ in range(spec.conns)]
        for c in held:
            await c.close()
    factory = session_factory(engine) if engine is not None else None

    async def worker(wid: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            coach_id, pending = spec.coaches[rng.randrange(len(spec.coaches))]
            gross = 5000 + (n * 7919 + wid * 104729) % 20000  # varied: exercises rounding
            s = split(gross, FEE_BPS)
            key = f"payment:bench:{spec.tag}:{os.getpid()}:{wid}:{n}"
            if lean:
                legs = [
                    {"account_id": spec.stripe, "amount": s.gross, "currency": "usd"},
                    {"account_id": spec.fees, "amount": -s.platform_fee, "currency": "usd"},
                    {"account_id": pending, "amount": -s.coach_share, "currency": "usd"},
                ]
                await conns[wid].execute(
                    LEAN_SQL,
                    (
                        TxType.SESSION_PAYMENT.value,
                        key,
                        OCCURRED_AT,
                        json.dumps(legs),
                        json.dumps({"coach_id": coach_id}),
                    ),
                )
            else:
                assert factory is not None
                db: AsyncSession
                async with factory() as db:
                    await post(
                        db,
                        type=TxType.SESSION_PAYMENT,
                        idempotency_key=key,
                        occurred_at=OCCURRED_AT,
                        legs=[
                            Leg(spec.stripe, s.gross, "usd"),
                            Leg(spec.fees, -s.platform_fee, "usd"),
                            Leg(pending, -s.coach_share, "usd"),
                        ],
                        coach_id=coach_id,
                    )
                    await db.commit()
            n += 1
            tally.count += 1
            tally.gross += s.gross
            tally.fees += s.platform_fee
            tally.coach_share[pending] += s.coach_share

    await asyncio.sleep(max(0.0, spec.start_at - time.time()))
    tally.late = max(0.0, time.time() - spec.start_at)
    cpu0 = time.process_time()
    deadline = time.monotonic() + spec.seconds
    await asyncio.gather(*(worker(i) for i in range(spec.conns)))
    tally.cpu = time.process_time() - cpu0
    for conn in conns:
        await conn.close()
    if engine is not None:
        await engine.dispose()
    return tally


def _proc_main(spec: Spec) -> Tally:
    return asyncio.run(_run_spec(spec))


@dataclass
class Point:
    rate: float
    client_cpu: float  # share of the machine's cores used by the client processes


class Runner:
    def __init__(self, url: str, accounts: Accounts, seconds: float, procs: int) -> None:
        self.url = url
        self.accounts = accounts
        self.seconds = seconds
        self.procs = procs
        self.total = Tally()
        self.pool = multiprocessing.get_context("spawn").Pool(procs)
        self.runs = 0

    def run(
        self, path: str, coaches: list[tuple[int, int]], workers: int, seconds: float = 0
    ) -> Point:
        seconds = seconds or self.seconds
        common.checkpoint(self.url)
        self.runs += 1
        nprocs = min(workers, self.procs)
        per = [workers // nprocs + (1 if i < workers % nprocs else 0) for i in range(nprocs)]
        start_at = time.time() + (3.0 if self.runs == 1 else 1.0)  # 1st: processes import
        specs = [
            Spec(self.url, path, self.accounts.stripe, self.accounts.fees, coaches, c, start_at,
                 seconds, f"{self.runs}.{i}")
            for i, c in enumerate(per)
        ]  # fmt: skip
        point = Tally()
        for t in self.pool.map(_proc_main, specs, chunksize=1):
            point.add(t)
        if point.late > 0.2 and self.runs > 1:  # the warm-up run pays for process start
            print(f"  (warning: a client process started {point.late:.2f} s late)")
        self.total.add(point)
        cores = os.cpu_count() or 1
        return Point(point.count / seconds, point.cpu / seconds / cores)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


async def create_accounts(url: str, coaches: int, coach_slots: int) -> Accounts:
    engine = create_engine(url, pool_size=1)
    async with session_factory(engine)() as db:
        stripe = await get_account_id(db, AccountRef.platform(Kind.STRIPE_BALANCE, "usd"))
        fees = await get_account_id(db, AccountRef.platform(Kind.FEE_REVENUE, "usd"))

        async def pending(coach_id: int) -> tuple[int, int]:
            ref = AccountRef.coach(coach_id, Kind.PENDING, "usd")
            return coach_id, await get_account_id(db, ref)

        spread = [await pending(c) for c in range(1, coaches + 1)]
        hot = [await pending(coaches + 1)]
        slotted = [await pending(coaches + 2)]
        if coach_slots > 1:
            # The experiment: this coach's pending account in several slots, as the
            # hot platform accounts are. Done here only, not in the migration.
            await db.execute(
                text("UPDATE ledger_accounts SET slots = :n WHERE id = :a"),
                {"n": coach_slots, "a": slotted[0][1]},
            )
            await db.execute(
                text(
                    "INSERT INTO ledger_balance_slots (account_id, slot, balance) "
                    "SELECT :a, s, 0 FROM generate_series(1, :n - 1) s ON CONFLICT DO NOTHING"
                ),
                {"n": coach_slots, "a": slotted[0][1]},
            )
        await db.commit()
    await engine.dispose()
    return Accounts(stripe, fees, spread, hot, slotted)


def verify(url: str, accounts: Accounts, total: Tally) -> list[str]:
    """Balances equal the sum of the splits posted, history agrees with them, trial balance 0."""
    expected: Counter[int] = Counter({accounts.stripe: total.gross, accounts.fees: -total.fees})
    for account_id, share in total.coach_share.items():
        expected[account_id] -= share
    with psycopg.connect(url) as conn:
        slots: dict[int, int] = dict(
            conn.execute(
                "SELECT account_id, sum(balance)::bigint FROM ledger_balance_slots "
                "GROUP BY account_id"
            ).fetchall()
        )
        entries: dict[int, int] = dict(
            conn.execute(
                "SELECT account_id, sum(amount)::bigint FROM ledger_entries GROUP BY account_id"
            ).fetchall()
        )
        stale = conn.execute(
            "SELECT count(*) FROM ledger_balance_slots s LEFT JOIN LATERAL ("
            "  SELECT balance_after FROM ledger_entries e"
            "   WHERE e.account_id = s.account_id AND e.slot = s.slot"
            "   ORDER BY e.created_at DESC, e.id DESC LIMIT 1) e ON TRUE"
            " WHERE COALESCE(e.balance_after, 0) <> s.balance"
        ).fetchone()
        bad_tx = conn.execute(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY 1"
            " HAVING sum(amount) <> 0 OR count(*) <> 3) x"
        ).fetchone()
        n_tx = conn.execute("SELECT count(*) FROM ledger_transactions").fetchone()
    problems = []
    for account_id in sorted(set(expected) | set(slots) | set(entries)):
        want, got, hist = expected[account_id], slots.get(account_id, 0), entries.get(account_id, 0)
        if not want == got == hist:
            problems.append(f"account {account_id}: posted {want}, balance {got}, entries {hist}")
    if sum(slots.values()) != 0:
        problems.append(f"trial balance is {sum(slots.values())}, not 0")
    if stale and stale[0]:
        problems.append(f"{stale[0]} balance slots differ from their latest balance_after")
    if bad_tx and bad_tx[0]:
        problems.append(f"{bad_tx[0]} transactions are not 3 balanced legs")
    if not n_tx or n_tx[0] != total.count:
        problems.append(f"{n_tx[0] if n_tx else 0} transactions, {total.count} payments counted")
    return problems


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    p.add_argument("--url", default=common.DEFAULT_URL, help="server to use (any database)")
    p.add_argument("--seconds", type=int, default=5, help="duration of each point")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--clients", default="1,4,16", help="worker counts, comma separated")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 s per point, 1 and 4")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="client processes")
    p.add_argument("--coaches", type=int, default=1000, help="coaches in the spread mode")
    p.add_argument("--scale", type=int, default=0, help="pgbench scale (default: max clients)")
    p.add_argument("--protocol", default="prepared", help="pgbench -M (simple|prepared)")
    p.add_argument(
        "--coach-slots", type=int, default=16, help="slots of the hot-slotted coach (<2: skip)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.clients, args.repeat = 2, "1,4", 1
    args.clients = [int(c) for c in str(args.clients).split(",")]
    args.scale = args.scale or max(args.clients)
    return args


VARIANTS = (  # name, path, attribute of Accounts
    ("spread lean", "lean", "spread"),
    ("hot lean", "lean", "hot"),
    ("hot-slotted lean", "lean", "hot_slotted"),
    ("spread session", "session", "spread"),
    ("hot session", "session", "hot"),
)


def measure(args: argparse.Namespace, runner: Runner, pg_url: str, w: int) -> dict[str, float]:
    """Median over ``--repeat`` rounds; each round runs pgbench and every variant in turn,
    so load from elsewhere on a shared machine hits all of them alike."""
    samples: dict[str, list[float]] = {}
    for r in range(args.repeat):
        common.checkpoint(pg_url)
        tps = common.pgbench_run(pg_url, w, args.seconds, args.protocol)
        samples.setdefault("pgbench", []).append(tps)
        line = [f"pgbench {tps:.0f}"]
        for name, path, attr in VARIANTS:
            if attr == "hot_slotted" and args.coach_slots < 2:
                continue
            pt = runner.run(path, getattr(runner.accounts, attr), w)
            samples.setdefault(name, []).append(pt.rate)
            line.append(f"{name} {pt.rate:.0f} (client CPU {pt.client_cpu:.0%})")
        print(f"{w:>3} workers, round {r + 1}: " + ", ".join(line), flush=True)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    from migrations.runner import upgrade

    args = parse_args(argv)
    slotted = args.coach_slots > 1
    print(f"machine: {common.machine_info(args.url)}; load average {common.loadavg()}")
    print(
        f"client: {args.procs} spawned processes x asyncio connections; {args.seconds} s per "
        f"point, median of {args.repeat} interleaved rounds; pgbench -i -s {args.scale}, "
        f"-M {args.protocol}, -j min(clients, 2)",
        flush=True,
    )
    pid = os.getpid()
    main_rows: list[list[object]] = []
    hot_rows: list[list[object]] = []
    with (
        common.scratch_database(args.url, f"coachpay_bench_ledger_{pid}") as url,
        common.scratch_database(args.url, f"coachpay_bench_pgbench_{pid}") as pg_url,
    ):
        upgrade(url)
        common.pgbench_init(pg_url, args.scale)
        accounts = asyncio.run(create_accounts(url, args.coaches, args.coach_slots))
        runner = Runner(url, accounts, args.seconds, args.procs)
        try:
            # Warm up both (process start, caches, autovacuum after the loads); discarded.
            common.pgbench_run(pg_url, max(args.clients), 2, args.protocol)
            runner.run("lean", accounts.spread, max(args.clients), seconds=2)
            for w in args.clients:
                m = measure(args, runner, pg_url, w)
                pg, sl, ss = m["pgbench"], m["spread lean"], m["spread session"]
                hl, hs = m["hot lean"], m["hot session"]
                main_rows.append([w, pg, sl, _ratio(sl, pg), ss, _ratio(ss, pg)])
                row: list[object] = [w, sl, hl, _ratio(hl, sl), ss, hs, _ratio(hs, ss)]
                if slotted:
                    hsl = m["hot-slotted lean"]
                    row += [hsl, _ratio(hsl, sl)]
                hot_rows.append(row)
        finally:
            runner.close()
        problems = verify(url, accounts, runner.total)

    print(f"load average at the end {common.loadavg()}")
    print("\nspread (1,000 coaches, hot platform accounts in 16 slots) vs pgbench TPC-B")
    print(
        common.format_table(
            ["workers", "pgbench tps", "ledger payments/s (lean)", "ratio",
             "ledger payments/s (session)", "ratio"],
            main_rows,
        )
    )  # fmt: skip
    print("\nhot (every payment to one coach) vs spread, payments/s")
    headers = ["workers", "spread lean", "hot lean", "hot/spread", "spread session",
               "hot session", "hot/spread"]  # fmt: skip
    if slotted:
        headers += [f"hot lean, coach in {args.coach_slots} slots", "hot/spread"]
    print(common.format_table(headers, hot_rows))
    print(f"\n{runner.total.count} payments posted in all")
    result: dict[str, object] = {"verified": "no" if problems else "yes"}
    for main_row, hot_row in zip(main_rows, hot_rows, strict=True):
        w = main_row[0]
        result[f"lean_vs_pgbench_c{w}"] = main_row[3]
        result[f"session_vs_pgbench_c{w}"] = main_row[5]
        result[f"hot_vs_spread_c{w}"] = hot_row[3]
        if slotted:
            result[f"hot{args.coach_slots}slots_vs_spread_c{w}"] = hot_row[8]
    print(common.result_line("ledger", result))  # collected by bench/all.sh
    if problems:
        print("NOT verified:\n  " + "\n  ".join(problems[:20]))
        return 1
    print("verified: every balance equals the splits posted and its entries; trial balance 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
