"""An embedded PostgreSQL (pgserver) for running with no database configured."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def embedded_database_url(data_dir: Path, *, database: str = "coachpay") -> str:
    """Start (or reuse) a PostgreSQL server in ``data_dir/pg`` and return a URL to ``database``."""
    import pgserver  # heavy import: only when actually needed

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
