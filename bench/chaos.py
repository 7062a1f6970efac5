"""A randomised, seeded fault run of the whole money path; prints the violations (0 expected).

    uv run python -m bench.chaos --runs 1000 --seed 1
    uv run python -m bench.chaos --seed 17 --runs 1 -v      # replay one run, with its details
    uv run python -m bench.chaos --quick                    # 20 runs (bench/all.sh)

Each run: 3 coaches, 3-6 mentees, 3-5 sessions, a simulated week of 24 steps
of bookings, payments, refunds, disputes, account changes and payout cycles,
with Stripe faults (429/500/timeouts/dropped connections, before and after
Stripe acted), process crashes (around every Stripe call, every webhook
handler and every payout step) and webhooks late, twice and out of order.
Then faults off, a drain, and the checks (bench/chaos_engine/invariants.py).
Runs share one scratch database (truncated between runs) and one in-process
emulator (reset between runs). Exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections import Counter

from bench.chaos_engine.runner import RunResult, run_one
from bench.chaos_engine.world import Env
from bench.common import DEFAULT_URL, scratch_database


def _report(result: RunResult, verbose: bool) -> None:
    for kind, text in result.violations:
        print(f"VIOLATION seed={result.seed} {kind}: {text}", flush=True)
    if verbose:
        print(f"seed={result.seed} {result.seconds:.2f}s faults={dict(result.faults)}")
        print(f"  outcomes={dict(sorted(result.outcomes.items()))}")


async def main_async(args: argparse.Namespace) -> int:
    name = f"coachpay_bench_chaos_{os.getpid()}"
    with scratch_database(args.url, name) as db_url:
        env = await Env.open(db_url)
        try:
            return await _runs(env, args)
        finally:
            await env.close()


async def _runs(env: Env, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    faults: Counter[str] = Counter()
    violations, failed, by_check = 0, [], Counter[str]()
    for i in range(args.runs):
        result = await run_one(env, args.seed + i, steps=args.steps, concurrent=args.concurrent)
        faults.update(result.faults)
        violations += len(result.violations)
        by_check.update(kind for kind, _ in result.violations)
        if result.violations:
            failed.append(result.seed)
        _report(result, args.verbose)
        if args.progress and (i + 1) % args.progress == 0:
            print(f"... {i + 1} runs, {violations} violations", flush=True)
    seconds = time.perf_counter() - started
    total = sum(faults.values())
    mode = ", concurrent" if args.concurrent else ""
    print(f"runs: {args.runs} (seeds {args.seed}..{args.seed + args.runs - 1}{mode})")
    print(f"faults injected: {total}")
    for kind, n in sorted(faults.items()):
        print(f"  {kind:36} {n}")
    print(f"violations: {violations}")
    for kind, n in sorted(by_check.items()):
        print(f"  {kind:36} {n}")
    if failed:
        print(f"failing seeds ({len(failed)}): {' '.join(map(str, failed))}")
    print(f"seconds: {seconds:.1f} ({seconds / max(args.runs, 1):.2f} per run)")
    print(
        f"RESULT bench=chaos runs={args.runs} faults={total} violations={violations} "
        f"seconds={seconds:.1f}"
    )
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="steps of ~8.4 h per run (a week)")
    ap.add_argument("--quick", action="store_true", help="20 runs")
    ap.add_argument(
        "--concurrent",
        action="store_true",
        help="also two things at once (races; such runs do not replay exactly)",
    )
    ap.add_argument("--progress", type=int, default=0, help="a progress line every N runs")
    ap.add_argument("--url", default=os.environ.get("COACHPAY_TEST_DATABASE_URL", DEFAULT_URL))
    ap.add_argument("-v", "--verbose", action="store_true", help="per-run details")
    ap.add_argument("--logs", action="store_true", help="the services' own logs too")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs = 20
    # The services log every fault they absorb; thousands of runs would drown the result.
    logging.basicConfig(level=logging.WARNING)
    if not args.logs:
        logging.disable(logging.CRITICAL)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
