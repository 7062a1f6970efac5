from __future__ import annotations

import os

import psycopg

from migrations.runner import downgrade, upgrade
from tests.dbutil import create_database, drop_database


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(pg_server_url: str) -> None:
    url = create_database(pg_server_url, f"coachpay_test_migrations_{os.getpid()}")
    try:
        upgrade(url)
        first = _tables(url)
        assert {"ledger_accounts", "ledger_entries", "ledger_transactions"} <= first
        downgrade(url, "base")
        assert _tables(url) <= {"alembic_version"}
        upgrade(url)
        assert _tables(url) == first
    finally:
        drop_database(pg_server_url, f"coachpay_test_migrations_{os.getpid()}")
