"""An embedded PostgreSQL (pgserver, the ``embedded`` extra) for running with no
database configured: the demo and the tests.

Its lifetime: started by the first coachpay command that needs it, it keeps
running after that command exits, so the next one (``worker``, ``payouts run``,
another ``serve``) shares it and its data; ``stop_embedded`` (``coachpay db
stop``) stops it. Its data stay in ``data_dir/pg`` until that folder is removed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError

log = logging.getLogger(__name__)
STOP_TIMEOUT_SECONDS = 30.0
MISSING = (
    "COACHPAY_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
    "set COACHPAY_DATABASE_URL to your PostgreSQL, or install the 'embedded' extra "
    "(uv sync --extra embedded, or pip install 'coachpay[embedded]')"
)


def embedded_available() -> bool:
    return importlib.util.find_spec("pgserver") is not None


def require_embedded() -> None:
    if not embedded_available():
        raise ConfigurationError(MISSING)


def _pgserver() -> Any:
    require_embedded()
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset; it then uses /tmp.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver  # heavy import: only when actually needed

    return pgserver


def embedded_database_url(data_dir: Path, *, database: str = "coachpay") -> str:
    """Start (or reuse) a PostgreSQL server in ``data_dir/pg`` and return a URL to ``database``."""
    pgserver = _pgserver()
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so a second
    # `coachpay` command (worker, token, payouts run) shares it.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "1 row" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
        log.info("created embedded database %s in %s", database, pgdata)
    uri: str = server.get_uri(database)
    return uri


def _postmaster_pid(pgdata: Path) -> int | None:
    """The running postmaster of ``pgdata``, or None (no pid file, or a stale one)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.parent.exists():  # Linux: make sure the pid is still that server
        try:
            if b"postgres" not in cmdline.read_bytes():
                return None
        except OSError:
            return None
    else:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
    return pid


def embedded_running(data_dir: Path) -> bool:
    return _postmaster_pid((data_dir / "pg").resolve()) is not None


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` (fast shutdown: open sessions are
    ended, committed data kept). False when none was running."""
    pgdata = (data_dir / "pg").resolve()
    pid = _postmaster_pid(pgdata)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _postmaster_pid(pgdata) == pid:
        time.sleep(0.1)
    if _postmaster_pid(pgdata) == pid:
        raise TimeoutError(f"the embedded PostgreSQL (pid {pid}) did not stop")
    return True
