"""Balance read at scale: a ledger of N entries, then the coach balance endpoint's latency.

Run from the repository root: ``uv run python -m bench.balances [--quick] [--entries N]``
(see bench/README.md).

1. Fill a scratch database with set-based SQL (``INSERT ... SELECT generate_series``)
   in chunks: session payments of 3 legs (platform ``stripe_balance`` and
   ``fee_revenue`` in 16 slots, the coach's ``pending``), spread over
   ``--coaches`` coaches, one earning per payment (all but the last two per coach
   ``paid``), running ``balance_after`` per (account, slot) by a window function,
   and the slot balances set to the sums. The bulk session runs with
   ``session_replication_role = replica`` (no triggers: the deferred balance check
   would test millions of transactions at commit); the secondary indexes of the
   two big tables are dropped during the fill and rebuilt from their own
   definitions, then ``VACUUM ANALYZE``. A sample of accounts is checked after:
   slot balance = sum of entries = latest ``balance_after``; every transaction
   balanced.
2. Time the SQL of ``ledger.accounts.coach_balances`` (and of
   ``payouts.views.coach_balance``, what the endpoint serves) in-process at
   ``--small`` entries and again at N: the ledger read must not grow with history.
3. ``coachpay serve --no-jobs`` over the database: ``GET /v1/coaches/me/balance``
   with coach tokens (``api.auth.mint_token``), sequential then concurrent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

if __name__ == "__main__" and not __package__:
    raise SystemExit("run it from the repository root: uv run python -m bench.balances")

import httpx
import psycopg

from bench import common

SLOTS = 16
CHUNK_TX = 500_000  # transactions per INSERT statement (1.5 M entries)
BIG_TABLES = ("ledger_entries", "ledger_transactions", "earnings")
BALANCE_PATH = "/v1/coaches/me/balance"


def setup_accounts(conn: psycopg.Connection[Any], coaches: int) -> None:
    """Platform accounts (16 slots), 3 coach accounts each, their slot rows, coach users."""
    conn.execute(
        "INSERT INTO ledger_accounts (owner_type, owner_id, kind, currency, slots) VALUES "
        "('platform', 0, 'stripe_balance', 'usd', %(s)s), "
        "('platform', 0, 'fee_revenue', 'usd', %(s)s)",
        {"s": SLOTS},
    )
    conn.execute(
        "INSERT INTO ledger_accounts (owner_type, owner_id, kind, currency, slots) "
        "SELECT 'coach', c, k, 'usd', 1 FROM generate_series(1, %(n)s) c, "
        "unnest(ARRAY['pending', 'available', 'in_transit']) k ORDER BY c, k",
        {"n": coaches},
    )
    conn.execute(
        "INSERT INTO ledger_balance_slots (account_id, slot, balance) "
        "SELECT a.id, s, 0 FROM ledger_accounts a, generate_series(0, a.slots - 1) s"
    )
    # Users 1..N are the coaches (the token's sub resolves to them): owner_id = user id.
    conn.execute(
        "INSERT INTO users (id, sub, role, created_at, last_seen_at) "
        "SELECT c, 'bench-coach-' || c, 'coach', now(), now() FROM generate_series(1, %(n)s) c",
        {"n": coaches},
    )
    conn.execute("SELECT setval('users_id_seq', %(n)s)", {"n": coaches})


def check_layout(conn: psycopg.Connection[Any], first: int, coaches: int) -> None:
    """Coach c's pending account is ``first + 2 + 3 (c - 1)``: the fill SQL relies on it."""
    bad = conn.execute(
        "SELECT count(*) FROM ledger_accounts WHERE kind = 'pending' "
        "AND id <> %s + 2 + 3 * (owner_id - 1)",
        (first,),
    ).fetchone()
    if bad is None or bad[0]:
        raise RuntimeError("coach accounts are not laid out as the fill expects")


def drop_secondary_indexes(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop the big tables' indexes that back no constraint; return their definitions."""
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = ANY(%s::regclass[]) AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        (list(BIG_TABLES),),
    ).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [d for _, d in rows]


# One chunk of payments [lo, hi]: transactions, entries with running balances on top of
# the slot balances so far, the slots moved to the new totals, one earning per payment.
# gross = 100 x (50..249) minor units: fee at 20 % is exact (the split rule's rounding is
# exercised by bench/ledger.py, not here).
FILL_SQL = (
    """
INSERT INTO ledger_transactions (id, type, idempotency_key, legs_signature, occurred_at,
    created_at, coach_id, description)
SELECT g, 'session_payment', 'bench:payment:' || g, 'bench', t, t, 1 + g %% %(coaches)s, 'bench'
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g,
       LATERAL (SELECT %(t0)s::timestamptz + g * interval '10 ms' AS t) ts
""",
    """
CREATE TEMP TABLE chunk_legs ON COMMIT DROP AS
SELECT g AS tx, l.account_id, l.slot, l.amount,
       %(t0)s::timestamptz + g * interval '10 ms' AS t
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g,
       LATERAL (SELECT 100 * (50 + g %% 200) AS gross) x,
       LATERAL (VALUES (%(stripe)s::bigint, (g %% %(slots)s)::int, x.gross),
                       (%(fees)s::bigint, (g %% %(slots)s)::int, -(x.gross / 5)),
                       (%(pending0)s::bigint + 3 * (g %% %(coaches)s), 0, -(x.gross - x.gross / 5))
               ) AS l(account_id, slot, amount)
""",
    """
INSERT INTO ledger_entries (transaction_id, account_id, slot, currency, amount, balance_after,
    created_at)
SELECT l.tx, l.account_id, l.slot, 'usd', l.amount,
       s.balance + sum(l.amount) OVER (PARTITION BY l.account_id, l.slot ORDER BY l.tx), l.t
  FROM chunk_legs l JOIN ledger_balance_slots s USING (account_id, slot)
 ORDER BY l.tx, l.account_id
""",
    """
UPDATE ledger_balance_slots s SET balance = s.balance + d.total
  FROM (SELECT account_id, slot, sum(amount) AS total FROM chunk_legs GROUP BY 1, 2) d
 WHERE s.account_id = d.account_id AND s.slot = d.slot
""",
    """
INSERT INTO earnings (coach_id, currency, gross, platform_fee, amount, available_at, status,
    payment_transaction_id, released_at, created_at)
SELECT 1 + g %% %(coaches)s, 'usd', x.gross, x.gross / 5, x.gross - x.gross / 5,
       t + interval '72 hours',
       CASE WHEN g > %(last)s - 2 * %(coaches)s THEN 'pending' ELSE 'paid' END,
       g, CASE WHEN g > %(last)s - 2 * %(coaches)s THEN NULL ELSE t + interval '72 hours' END,
       t
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g,
       LATERAL (SELECT 100 * (50 + g %% 200) AS gross,
                       %(t0)s::timestamptz + g * interval '10 ms' AS t) x
""",
    # One paid payout per coach per chunk for that chunk's paid earnings (every tenth
    # coach with 1.00 reversed), so that "paid out" is not 0.
    """
INSERT INTO payouts (coach_id, currency, amount, status, destination, stripe_transfer_id,
    reversed_amount, created_at, updated_at, settled_at)
SELECT 1 + g %% %(coaches)s, 'usd', sum(x.gross - x.gross / 5), 'paid', 'acct_bench',
       'tr_bench_' || %(lo)s || '_' || (1 + g %% %(coaches)s),
       CASE WHEN g %% %(coaches)s %% 10 = 9 THEN 100 ELSE 0 END, max(x.t), max(x.t), max(x.t)
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g,
       LATERAL (SELECT 100 * (50 + g %% 200) AS gross,
                       %(t0)s::timestamptz + g * interval '10 ms' + interval '72 hours' AS t) x
 WHERE g <= %(last)s - 2 * %(coaches)s
 GROUP BY 1 + g %% %(coaches)s, g %% %(coaches)s %% 10 = 9
""",
)


def fill(url: str, coaches: int, start_tx: int, end_tx: int, last_tx: int) -> float:
    """Payments start_tx..end_tx (inclusive); returns seconds. ``last_tx``: the final id."""
    t = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        ids = dict(
            conn.execute(
                "SELECT kind, min(id) FROM ledger_accounts WHERE kind IN "
                "('stripe_balance', 'fee_revenue', 'available') GROUP BY kind"
            ).fetchall()
        )
        # Accounts were inserted ordered by (coach, kind): available, in_transit, pending.
        check_layout(conn, ids["available"], coaches)
        params: dict[str, Any] = {
            "coaches": coaches,
            "slots": SLOTS,
            "stripe": ids["stripe_balance"],
            "fees": ids["fee_revenue"],
            "pending0": ids["available"] + 2,
            "last": last_tx,
            "t0": "2024-01-01T00:00:00Z",
        }
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET work_mem = '1GB'")
        indexes = drop_secondary_indexes(conn)
        for lo in range(start_tx, end_tx + 1, CHUNK_TX):
            hi = min(end_tx, lo + CHUNK_TX - 1)
            with conn.transaction():
                for sql in FILL_SQL:
                    conn.execute(sql, {**params, "lo": lo, "hi": hi})
            print(f"  filled payments {lo}..{hi} ({time.monotonic() - t:.0f} s)", flush=True)
        conn.execute("SELECT setval('ledger_transactions_id_seq', %s)", (end_tx,))
        for definition in indexes:
            conn.execute(definition)
        conn.execute("RESET session_replication_role")
        # The triggers were off: the totals come from every row, set-based, by the
        # migration's own backfill statement (what an upgrade of this data would do).
        tt = time.monotonic()
        with conn.transaction():
            conn.execute("DELETE FROM coach_money_totals")
            conn.execute(totals_backfill())
        print(f"  totals backfilled in {time.monotonic() - tt:.1f} s", flush=True)
        for table in (*BIG_TABLES, "payouts", "coach_money_totals"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return time.monotonic() - t


def totals_backfill() -> str:
    """Migration 0007's backfill SQL (the module name starts with a digit: importlib)."""
    module = importlib.import_module("migrations.versions.0007_coach_money_totals")
    return str(module.BACKFILL)


def verify(url: str, coaches: int, sample: int = 50) -> list[str]:
    """For sampled coaches and both platform accounts: slots = entries = latest balance_after."""
    problems = []
    rng = random.Random(7)
    with psycopg.connect(url) as conn:
        picked = [rng.randint(1, coaches) for _ in range(sample)]
        accounts = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM ledger_accounts WHERE owner_type = 'platform' OR "
                "(kind = 'pending' AND owner_id = ANY(%s))",
                (picked,),
            )
        ]
        for a in accounts:
            row = conn.execute(
                "SELECT (SELECT sum(balance) FROM ledger_balance_slots WHERE account_id = %(a)s),"
                " (SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE account_id = %(a)s),"
                " (SELECT COALESCE(sum(b), 0) FROM (SELECT DISTINCT ON (slot) balance_after AS b"
                "   FROM ledger_entries WHERE account_id = %(a)s"
                "   ORDER BY slot, created_at DESC, id DESC) x)",
                {"a": a},
            ).fetchone()
            if row is None or not row[0] == row[1] == row[2]:
                problems.append(f"account {a}: slots, entries, latest balance_after = {row}")
        for c in picked:
            row = conn.execute(
                "SELECT (SELECT COALESCE(sum(paid_out), 0) FROM coach_money_totals"
                "  WHERE coach_id = %(c)s),"
                " (SELECT COALESCE(sum(amount - reversed_amount), 0) FROM payouts"
                "  WHERE coach_id = %(c)s AND status = 'paid'),"
                " (SELECT COALESCE(sum(lifetime_earnings), 0) FROM coach_money_totals"
                "  WHERE coach_id = %(c)s),"
                " (SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings"
                "  WHERE coach_id = %(c)s)",
                {"c": c},
            ).fetchone()
            if row is None or row[0] != row[1] or row[2] != row[3]:
                problems.append(f"coach {c}: totals paid/sum, lifetime/sum = {row}")
        trial = conn.execute("SELECT sum(balance) FROM ledger_balance_slots").fetchone()
        if trial is None or trial[0] != 0:
            problems.append(f"trial balance {trial}")
        unbalanced = conn.execute(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries "
            "WHERE transaction_id % 997 = 0 GROUP BY 1 HAVING sum(amount) <> 0) x"
        ).fetchone()
        if unbalanced and unbalanced[0]:
            problems.append(f"{unbalanced[0]} sampled transactions unbalanced")
    return problems


def counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM earnings)"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# The read model before migration 0007 (payouts/views.py at c1bde7a), timed in the same
# run as a reference: it summed every earning and payout of the coach on each read.
OLD_TOTALS = (
    "SELECT c.currency, "
    "(SELECT COALESCE(sum(amount - reversed_amount), 0) FROM payouts p WHERE p.coach_id = :c "
    "  AND p.currency = c.currency AND p.status = 'paid') AS paid_out, "
    "(SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings e "
    "  WHERE e.coach_id = :c AND e.currency = c.currency) AS lifetime, "
    "(SELECT min(available_at) FROM earnings e WHERE e.coach_id = :c "
    "  AND e.currency = c.currency AND e.status = 'pending') AS next_at "
    "FROM (SELECT DISTINCT currency FROM earnings WHERE coach_id = :c "
    "      UNION SELECT DISTINCT currency FROM payouts WHERE coach_id = :c) c"
)
OLD_NEXT_AMOUNT = (
    "SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings WHERE coach_id = :c "
    "AND currency = :cur AND status = 'pending' AND available_at = :at"
)


async def old_read_model(db: Any, coach: int) -> None:
    from sqlalchemy import text

    from ledger.accounts import coach_balances

    await coach_balances(db, coach)
    for r in (await db.execute(text(OLD_TOTALS), {"c": coach})).all():
        if r.next_at is not None:
            params = {"c": coach, "cur": r.currency, "at": r.next_at}
            await db.scalar(text(OLD_NEXT_AMOUNT), params)


async def explain(db: Any, coaches: int, n: int = 20) -> dict[str, float]:
    """Server side, independent of client CPU and mostly of load: median execution ms and
    buffers touched by the endpoint's statement and by the old totals query."""
    from sqlalchemy import text

    from payouts.views import BALANCE_SQL

    conn = await db.connection()
    rng = random.Random(3)
    got: dict[str, list[float]] = {"new_ms": [], "new_buffers": [], "old_ms": [], "old_buffers": []}
    for _ in range(n):
        c = rng.randint(1, coaches)
        for key, sql, params in (
            ("new", BALANCE_SQL, {"coach_id": c}),
            ("old", text(OLD_TOTALS).compile(dialect=conn.dialect).string, {"c": c}),
        ):
            plan = (
                await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
            ).scalar_one()[0]
            top = plan["Plan"]
            got[f"{key}_ms"].append(plan["Execution Time"])
            got[f"{key}_buffers"].append(top["Shared Hit Blocks"] + top["Shared Read Blocks"])
    return {k: sorted(v)[len(v) // 2] for k, v in got.items()}


async def time_functions(url: str, coaches: int, n: int) -> dict[str, list[float]]:
    """In-process: the ledger read, the endpoint's read model, and the endpoint's
    statement (user row + balance, on the plain pool as the endpoint runs it), one
    coach at a time."""
    from datetime import UTC, datetime

    from core.db import create_engine, session_factory
    from core.rawpool import RawPool
    from ledger.accounts import coach_balances
    from payouts.views import coach_balance, coach_balance_of_sub

    engine = create_engine(url, pool_size=1)
    factory = session_factory(engine)
    rng = random.Random(11)
    out: dict[str, list[float]] = {"ledger": [], "view": [], "request": [], "old": []}
    seen = datetime(2000, 1, 1, tzinfo=UTC)  # every bench user counts as seen lately

    reads = RawPool(url, name="bench-reads", connections=1)

    async def by_sub(c: int) -> None:
        found = await coach_balance_of_sub(
            reads.fetch, sub=f"bench-coach-{c}", role="coach", email=None, seen_after=seen
        )
        if found is None or found[0] != c or not found[1]:
            raise RuntimeError(f"coach {c}: {found}")

    async with factory() as db:
        for _ in range(50):  # warm: connection, prepared statements, caches
            await coach_balances(db, rng.randint(1, coaches))
            await coach_balance(db, rng.randint(1, coaches))
            await by_sub(rng.randint(1, coaches))
        for _ in range(n):
            c = rng.randint(1, coaches)
            t = time.perf_counter()
            found = await coach_balances(db, c)
            out["ledger"].append(time.perf_counter() - t)
            if not found:
                raise RuntimeError(f"coach {c} has no balance")
            t = time.perf_counter()
            await coach_balance(db, c)
            out["view"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await by_sub(c)
            out["request"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await old_read_model(db, c)
            out["old"].append(time.perf_counter() - t)
        plan = await explain(db, coaches)
        out.update({k: [v] for k, v in plan.items()})
        await db.rollback()
    await reads.close()
    await engine.dispose()
    return out


async def check_http(base: str, tokens: dict[int, str]) -> int:
    """Each coach's balance once over httpx, its body checked (and the server warmed:
    provisioning reads, connections); how many were wrong."""
    wrong = 0
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for c, token in tokens.items():
            r = await client.get(BALANCE_PATH, headers={"authorization": token})
            if r.status_code != 200 or r.json().get("coach_id") != c or not r.json()["balances"]:
                wrong += 1
    return wrong


async def time_http(
    base: str, tokens: dict[int, str], n: int, concurrency: int
) -> tuple[list[float], float, int]:
    """``n`` GETs, closed loop on ``concurrency`` keep-alive connections, random coaches;
    (latencies of the 200s, wall seconds, errors).

    The raw client of bench/webhook_client.py: httpx spends ~1 ms of CPU per
    request, on the 2 cores the server and PostgreSQL share, which showed up in
    the latency measured (the bodies are checked once by ``check_http``)."""
    from bench.webhook_client import LoadClient, Tally

    host, port = base.removeprefix("http://").rsplit(":", 1)
    client = LoadClient(host, int(port), concurrency, secret="")
    await client.open()
    rng = random.Random(concurrency)
    raws = [
        client.get(BALANCE_PATH, b"authorization: %s\r\n" % t.encode()) for t in tokens.values()
    ]
    tally = Tally()
    left = n
    finished = asyncio.get_running_loop().create_future()

    def next_request() -> None:
        nonlocal left
        if left > 0:
            left -= 1
            client.launch(raws[rng.randrange(len(raws))], tally)
        elif tally.in_flight == 0 and not finished.done():
            finished.set_result(None)

    client.on_idle = next_request
    t0 = time.perf_counter()
    for _ in range(concurrency):
        next_request()
    await asyncio.wait_for(finished, timeout=max(60.0, n / 10))
    wall = time.perf_counter() - t0
    client.close()
    return tally.latencies, wall, tally.errors


def _ms(values: list[float]) -> tuple[float, float, float]:
    v = sorted(values)
    return tuple(common.percentile(v, q) * 1000 for q in (0.5, 0.99, 1.0))  # type: ignore[return-value]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.balances", description=__doc__.split("\n")[0])
    p.add_argument("--url", default=common.DEFAULT_URL, help="server to use (any database)")
    p.add_argument("--entries", type=int, default=10_000_000, help="ledger entries to fill")
    p.add_argument("--small", type=int, default=100_000, help="first measurement at this size")
    p.add_argument("--coaches", type=int, default=10_000)
    p.add_argument("--quick", action="store_true", help="200,000 entries, fewer requests")
    p.add_argument("--requests", type=int, default=2000, help="HTTP requests per run")
    p.add_argument("--calls", type=int, default=2000, help="in-process calls per size")
    p.add_argument("--concurrency", type=int, default=8, help="workers of the concurrent run")
    p.add_argument("--tokens", type=int, default=200, help="distinct coaches asked over HTTP")
    p.add_argument("--log-level", default="WARNING", help="server log level")
    args = p.parse_args(argv)
    if args.quick:
        args.entries, args.requests, args.calls = 200_000, 500, 500
    return args


def main(argv: list[str] | None = None) -> int:
    from api.auth import mint_token
    from core.settings import Settings
    from migrations.runner import upgrade

    args = parse_args(argv)
    total_tx = max(1, args.entries // 3)
    small_tx = min(total_tx, max(1, args.small // 3))
    print(f"machine: {common.machine_info(args.url)}; load average {common.loadavg()}")
    print(
        f"{args.entries:,} entries = {total_tx:,} payments x 3 legs over {args.coaches:,} "
        f"coaches (+1 earning each); measured at {small_tx * 3:,} and {total_tx * 3:,} entries",
        flush=True,
    )
    rows: list[list[object]] = []
    logdir = tempfile.mkdtemp(prefix="coachpay-bench-balances-")
    with common.scratch_database(args.url, f"coachpay_bench_balances_{os.getpid()}") as url:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            setup_accounts(conn, args.coaches)
        sizes = [small_tx, total_tx] if small_tx < total_tx else [total_tx]
        done = 0
        fill_s = 0.0
        problems: list[str] = []
        for size in sizes:
            fill_s += fill(url, args.coaches, done + 1, size, total_tx)
            done = size
            problems += verify(url, args.coaches)
            entries, earnings = counts(url)
            f = asyncio.run(time_functions(url, args.coaches, args.calls))
            led, view, req = _ms(f["ledger"]), _ms(f["view"]), _ms(f["request"])
            old = _ms(f["old"])
            rows.append([f"{entries:,}", f"{earnings:,}", *led[:2], *view[:2], *req[:2], *old[:2]])
            print(
                f"  server side (EXPLAIN ANALYZE, median of 20 coaches): endpoint statement "
                f"{f['new_ms'][0]:.3f} ms, {f['new_buffers'][0]:.0f} buffers; old totals query "
                f"{f['old_ms'][0]:.3f} ms, {f['old_buffers'][0]:.0f} buffers",
                flush=True,
            )
            print(f"  at {entries:,} entries: ledger read p50/p99 {led[0]:.2f}/{led[1]:.2f} ms, "
                  f"endpoint read model {view[0]:.2f}/{view[1]:.2f} ms, "
                  f"user + balance statement {req[0]:.2f}/{req[1]:.2f} ms, "
                  f"old read model {old[0]:.2f}/{old[1]:.2f} ms (load average "
                  f"{common.loadavg()})", flush=True)  # fmt: skip
        print(f"filled in {fill_s:.0f} s")
        settings = Settings(database_url=url)
        rng = random.Random(5)
        picked = rng.sample(range(1, args.coaches + 1), min(args.tokens, args.coaches))
        tokens = {
            c: "Bearer " + mint_token(settings, f"bench-coach-{c}", "coach", timedelta(hours=2))
            for c in picked
        }
        env = {"COACHPAY_LOG_LEVEL": args.log_level, "COACHPAY_RUN_JOBS": "false"}
        with common.coachpay_serve(url, env, f"{logdir}/serve.log") as base:
            print(f"HTTP, load average {common.loadavg()}", flush=True)
            wrong = asyncio.run(check_http(base, tokens))
            seq = asyncio.run(time_http(base, tokens, args.requests, 1))
            par = asyncio.run(time_http(base, tokens, args.requests, args.concurrency))
    http_rows = []
    for name, (lat, wall, errors) in (("sequential", seq), (f"{args.concurrency} workers", par)):
        p50, p99, mx = _ms(lat)
        http_rows.append([name, len(lat), errors, len(lat) / wall if wall else 0, p50, p99, mx])
    print(f"\nload average at the end {common.loadavg()}; server log in {logdir}")
    print("\nin-process reads (one AsyncSession, random coaches), ms")
    print(
        common.format_table(
            ["entries", "earnings", "ledger p50", "ledger p99", "endpoint model p50",
             "endpoint model p99", "user+balance p50", "user+balance p99", "old model p50",
             "old model p99"],
            rows,
        )
    )  # fmt: skip
    print(
        "ledger = ledger.accounts.coach_balances; endpoint model = payouts.views.coach_balance;"
        " user+balance = payouts.views.coach_balance_of_sub (the endpoint's one statement);"
        " old model = the read model before migration 0007 (sums over the rows), for reference"
    )
    print(f"\nGET /v1/coaches/me/balance at {rows[-1][0]} entries ({len(tokens)} coaches), ms")
    print(
        common.format_table(
            ["client", "ok", "errors", "req/s", "p50", "p99", "max"], http_rows
        )
    )  # fmt: skip
    if problems:
        print("NOT verified:\n  " + "\n  ".join(problems[:20]))
    else:
        print("verified: sampled accounts' slots = sum of entries = latest balance_after; "
              "trial balance 0; sampled transactions balanced")  # fmt: skip
    print(
        common.result_line(
            "balances",
            {
                "entries": args.entries,
                "http_p50_ms": http_rows[0][4],
                "http_p99_ms": http_rows[0][5],
                "http_conc_p99_ms": http_rows[1][5],
                "http_conc_rps": http_rows[1][3],
                "ledger_p99_ms_small": rows[0][3],
                "ledger_p99_ms_full": rows[-1][3],
                "model_p50_ms_full": rows[-1][4],
                "model_p99_ms_full": rows[-1][5],
                "request_p99_ms_full": rows[-1][7],
                "old_model_p99_ms_full": rows[-1][9],
                "fill_s": fill_s,
                "verified": not problems,
            },
        )
    )
    if wrong:
        print(f"WRONG: {wrong} of {len(tokens)} coaches got another coach's or no balance")
    return 1 if problems or wrong or seq[2] or par[2] else 0


if __name__ == "__main__":
    sys.exit(main())
