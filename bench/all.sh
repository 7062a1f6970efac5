#!/usr/bin/env bash
# Run every benchmark in bench/ and print one summary table.
#
#   bench/all.sh            # full runs (long: the 10M-entry balance fill alone takes minutes)
#   bench/all.sh --quick    # smoke runs of each
#
# Environment: BENCH_URL (default postgresql://postgres@127.0.0.1:5432/postgres), a server on
# which the scripts may create and drop their scratch databases; BENCH_LOG_DIR (default: a
# new temporary directory) for each script's full output.
#
# Each script prints one machine-readable line `RESULT bench=<name> key=value ...`; this
# collects those, next to a pgbench TPC-B baseline taken in the same run, nproc, memory,
# load average and the date. Scripts not there yet are skipped with a note. Exit status:
# 0 when every script present exited 0.
set -u
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
    --quick) mode=quick ;;
    "") ;;
    *) echo "usage: bench/all.sh [--quick]" >&2; exit 2 ;;
esac
url="${BENCH_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
logdir="${BENCH_LOG_DIR:-$(mktemp -d -t coachpay-bench-all-XXXXXX)}"
mkdir -p "$logdir"

# name, then the arguments of each mode; a script without --quick gets smaller sizes.
scripts=(ledger payouts webhooks balances chaos)
quick_args() {
    case "$1" in
        payouts) echo "--earnings 10000 --coaches 1000 --limited-earnings 1000 --limited-coaches 100" ;;
        *) echo "--quick" ;;
    esac
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
summary=()
failed=0

pgbench_baseline() {
    # TPC-B, 4 clients, in a scratch database of its own (bench/common.py helpers).
    local seconds=$1
    uv run python - "$url" "$seconds" <<'EOF'
import os, sys
from bench import common
url, seconds = sys.argv[1], int(sys.argv[2])
with common.scratch_database(url, f"coachpay_bench_all_pgbench_{os.getpid()}") as pg:
    common.pgbench_init(pg, 4)
    common.pgbench_run(pg, 4, 2)  # warm-up
    common.checkpoint(pg)
    tps = common.pgbench_run(pg, 4, seconds)
print(common.result_line("pgbench", {"clients": 4, "scale": 4, "seconds": seconds, "tps": tps}))
EOF
}

echo "coachpay benchmarks ($mode), $started, logs in $logdir"
seconds=10
[ "$mode" = quick ] && seconds=5
baseline=$(pgbench_baseline "$seconds" 2>"$logdir/pgbench.err" | grep '^RESULT ' | tail -1)
echo "${baseline:-pgbench baseline FAILED (see $logdir/pgbench.err)}"

for name in "${scripts[@]}"; do
    file="bench/$name.py"
    if [ ! -f "$file" ]; then
        echo "-- $name: skipped ($file does not exist yet)"
        summary+=("$name|skipped|-|not in bench/ yet")
        continue
    fi
    args=""
    [ "$mode" = quick ] && args=$(quick_args "$name")
    # Only scripts that know --url get it (a newcomer may not).
    if uv run python -m "bench.$name" --help 2>/dev/null | grep -q -- '--url'; then
        args="--url $url $args"
    fi
    echo "-- $name: uv run python -m bench.$name $args"
    t0=$(date +%s)
    # shellcheck disable=SC2086  # $args is a list of words on purpose
    uv run python -m "bench.$name" $args >"$logdir/$name.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    result=$(grep '^RESULT ' "$logdir/$name.log" | tail -1 | sed 's/^RESULT //')
    if [ -z "$result" ]; then
        result="(no RESULT line) $(grep -v '^\s*$' "$logdir/$name.log" | tail -1 | cut -c1-120)"
    fi
    status=ok
    if [ "$rc" -ne 0 ]; then
        status="exit $rc"
        failed=1
    fi
    echo "   $status in ${secs}s: $result"
    summary+=("$name|$status|${secs}s|$result")
done

mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
echo
echo "== summary ($mode) =="
echo "date: $started .. $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc), memory $mem, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "postgres: $(psql "$url" -tAc 'SHOW server_version' 2>/dev/null || echo '?')"
echo "baseline: ${baseline:-pgbench FAILED}"
printf '%-10s | %-8s | %-6s | %s\n' bench status time result
printf '%s\n' "-----------+----------+--------+----------------------------------------------"
for row in "${summary[@]}"; do
    IFS='|' read -r n s t r <<<"$row"
    printf '%-10s | %-8s | %-6s | %s\n' "$n" "$s" "$t" "$r"
done

# The targets, each with its figure and a pass/miss word (from the RESULT lines above).
echo
echo "== targets =="
uv run python - "$logdir" <<'EOF'
import pathlib, sys
logdir = pathlib.Path(sys.argv[1])

def result(name):
    path = logdir / f"{name}.log"
    text = path.read_text() if path.exists() else ""
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {}
    return dict(kv.split("=", 1) for kv in lines[-1].split()[1:] if "=" in kv)

def word(ok):
    return "pass" if ok else "miss"

w, p = result("webhooks"), result("payouts")
if "payments_ratio" in w:
    ratio = float(w["payments_ratio"])
    print(f"payments handled / pgbench TPC-B (4 clients, same run): {ratio:.2f} "
          f"({float(w['payments_per_s']):.0f}/s vs {float(w['pgbench_tps']):.0f} tps), "
          f"target 0.2: {word(ratio >= 0.2)}, stretch 0.4: {word(ratio >= 0.4)}")
    calls = float(w["stripe_calls_per_payment"])
    print(f"Stripe calls per payment: {calls:.2f}, target <= 1: {word(0 < calls <= 1)}")
else:
    print("payments: no figures (see webhooks.log)")
if "seconds" in p:
    size = f"{int(p['earnings']):,} earnings / {int(p['coaches']):,} coaches"
    secs = float(p["seconds"])
    note = "" if int(p["earnings"]) >= 100_000 else " (smaller than the target's 100,000 / 10,000)"
    print(f"release + payouts, {size}: {secs:.1f} s (release {p['release_s']} s, payouts "
          f"{p['payouts_s']} s), target < 60 s: {word(secs < 60)}{note}")
    mb = float(p["peak_mb"])
    print(f"payouts peak memory: {mb:.0f} MB, target < 300 MB: {word(mb < 300)}")
else:
    print("payouts: no figures (see payouts.log)")
EOF
exit $failed
