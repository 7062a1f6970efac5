"""Shared benchmark helpers: scratch databases, pgbench, machine facts, tables.

Benchmarks run against a real PostgreSQL server (the machine's by default)
in databases of their own, created for the run and dropped at the end, so
they never touch the application's or the tests' data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"


def sync_url(url: str) -> str:
    """A libpq URL (psycopg and pgbench), whatever SQLAlchemy prefix it came with."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(sync_url(url))
    return urlunsplit(parts._replace(path="/" + name))


def create_database(url: str, name: str) -> str:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    """Create ``name`` on the server of ``url``, yield its URL, drop it whatever happens."""
    db_url = create_database(url, name)
    try:
        yield db_url
    finally:
        drop_database(url, name)


def _pgbench_conn_args(url: str) -> tuple[list[str], dict[str, str]]:
    parts = urlsplit(sync_url(url))
    args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    if parts.username:
        args += ["-U", unquote(parts.username)]
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return [*args, parts.path.lstrip("/")], env


def pgbench_init(url: str, scale: int) -> None:
    args, env = _pgbench_conn_args(url)
    subprocess.run(
        [PGBENCH, "-i", "-q", "-s", str(scale), *args],
        env=env,
        check=True,
        capture_output=True,
    )


_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def pgbench_run(url: str, clients: int, seconds: int, protocol: str = "prepared") -> float:
    """TPC-B-like throughput with ``clients`` connections, excluding connection time."""
    args, env = _pgbench_conn_args(url)
    cmd = [PGBENCH, "-n", "-c", str(clients), "-j", str(min(clients, 2))]
    cmd += ["-T", str(seconds), "-M", protocol, *args]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    found = _TPS.search(out)
    if found is None:
        raise RuntimeError(f"no tps in pgbench output:\n{out}")
    return float(found.group(1))


def checkpoint(url: str) -> None:
    """Start each point from a fresh checkpoint, so no point pays for another's dirty pages."""
    try:
        with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error:
        pass  # not allowed for this role (needs pg_checkpoint): measure without it


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, how busy it was."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_info(url: str) -> str:
    ram_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram_kib = int(line.split()[1])
    with psycopg.connect(with_database(url, "postgres")) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return (
        f"nproc={os.cpu_count()}, RAM={ram_kib / 1024 / 1024:.1f} GiB, "
        f"PostgreSQL {version[0] if version else '?'}, "
        f"synchronous_commit={sync[0] if sync else '?'}"
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:.0f}"
    return str(value)


# ---- helpers for the HTTP benchmarks (bench/webhooks.py, bench/balances.py) ---------------------


def free_port() -> int:
    """A TCP port free on loopback right now (the server binds it a moment later)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def coachpay_command() -> list[str]:
    """``coachpay`` of this environment: the script ``uv run coachpay`` would run, else uv."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("coachpay")
    return [str(script)] if script.exists() else ["uv", "run", "coachpay"]


@contextmanager
def coachpay_serve(
    db_url: str, env: dict[str, str], log_path: str, *, ready_timeout: float = 60.0
) -> Iterator[str]:
    """``coachpay serve --no-jobs`` on a free loopback port over ``db_url``; yields its base URL.

    Its output goes to ``log_path`` (a pipe nobody reads would block it once full).
    Stopped with SIGINT (uvicorn's graceful shutdown), killed if it hangs.
    """
    import signal
    import time

    import httpx

    port = free_port()
    full_env = {**os.environ, "COACHPAY_DATABASE_URL": db_url, **env}
    cmd = [*coachpay_command(), "serve", "--no-jobs", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"coachpay serve exited ({proc.returncode}); see {log_path}")
                try:
                    if httpx.get(f"{base}/health", timeout=1.0).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"coachpay serve not ready in time; see {log_path}")
                time.sleep(0.2)
            yield base
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; 0 when empty."""
    if not sorted_values:
        return 0.0
    import math

    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def result_line(name: str, values: dict[str, object]) -> str:
    """``RESULT bench=name key=value ...``: the one line bench/all.sh collects per script."""
    parts = [f"bench={name}"]
    for key, value in values.items():
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={text.replace(' ', '_')}")
    return "RESULT " + " ".join(parts)
