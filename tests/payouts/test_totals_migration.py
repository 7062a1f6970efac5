"""Migration 0007: the backfill totals the rows already there; the downgrade removes
everything it made (and writes go on without it); upgrading again backfills again."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from migrations.runner import downgrade, upgrade
from tests.dbutil import create_database, drop_database

SUMS = (
    "SELECT k.coach_id, k.currency, "
    "(SELECT COALESCE(sum(amount - reversed_amount), 0) FROM payouts p "
    "  WHERE p.coach_id = k.coach_id AND p.currency = k.currency AND p.status = 'paid'), "
    "(SELECT COALESCE(sum(amount - reduced_before_release), 0) FROM earnings e "
    "  WHERE e.coach_id = k.coach_id AND e.currency = k.currency) "
    "FROM (SELECT coach_id, currency FROM earnings UNION SELECT coach_id, currency FROM payouts) k"
)
TOTALS = (
    "SELECT coach_id, currency, sum(paid_out), sum(lifetime_earnings) FROM coach_money_totals "
    "GROUP BY 1, 2"
)
MADE = (
    "SELECT (SELECT count(*) FROM pg_tables WHERE tablename = 'coach_money_totals'), "
    "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'coach_money_totals%'), "
    "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%totals%'), "
    "(SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_earnings_next_release')"
)


def add_rows(conn: psycopg.Connection, coach_base: int) -> None:
    """Earnings in every state (some refunded before release) and payouts paid, failed,
    reversed, for three coaches in two currencies."""
    for i in range(30):
        coach, cur = coach_base + i % 3, ("usd", "eur")[i % 2]
        amount = 1000 + 37 * i
        status = ("pending", "available", "paid", "cancelled")[i % 4]
        reduced = amount if status == "cancelled" else (i * 11 if status == "pending" else 0)
        conn.execute(
            "INSERT INTO earnings (coach_id, currency, gross, platform_fee, amount, "
            "reduced_before_release, available_at, status) "
            "VALUES (%s, %s, %s, 100, %s, %s, now(), %s)",
            (coach, cur, amount + 100, amount, reduced, status),
        )
    for i in range(9):
        coach, cur = coach_base + i % 3, ("usd", "eur")[i % 2]
        status = ("paid", "failed", "paid")[i % 3]
        conn.execute(
            "INSERT INTO payouts (coach_id, currency, amount, status, destination, "
            "stripe_transfer_id, reversed_amount) VALUES (%s, %s, %s, %s, 'acct_m', %s, %s)",
            (coach, cur, 5000 + i, status, f"tr_m{coach_base}_{i}", 250 * (i % 2)),
        )


def table(conn: psycopg.Connection, sql: str) -> dict[tuple[int, str], tuple[int, int]]:
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in conn.execute(sql)}


@pytest.fixture
def scratch_url(pg_server_url: str) -> Iterator[str]:
    name = f"coachpay_test_totals_migration_{os.getpid()}"
    url = create_database(pg_server_url, name)
    yield url
    drop_database(pg_server_url, name)


def test_backfill_downgrade_and_upgrade_again(scratch_url: str) -> None:
    sync = scratch_url.replace("postgresql+psycopg://", "postgresql://", 1)
    upgrade(scratch_url, "0006")
    with psycopg.connect(sync, autocommit=True) as conn:
        add_rows(conn, 100)
        expected = table(conn, SUMS)
    assert len(expected) == 6 and any(paid for paid, _ in expected.values())

    upgrade(scratch_url, "0007")
    with psycopg.connect(sync, autocommit=True) as conn:
        assert table(conn, TOTALS) == expected
        assert conn.execute(MADE).fetchone() == (1, 6, 8, 1)
        add_rows(conn, 200)  # the triggers keep it from here on
        assert table(conn, TOTALS) == table(conn, SUMS)

    downgrade(scratch_url, "0006")
    with psycopg.connect(sync, autocommit=True) as conn:
        assert conn.execute(MADE).fetchone() == (0, 0, 0, 0)
        add_rows(conn, 300)  # writes without the triggers (nothing left calls them)
        expected = table(conn, SUMS)

    upgrade(scratch_url, "head")
    with psycopg.connect(sync, autocommit=True) as conn:
        assert table(conn, TOTALS) == expected
        assert len(expected) == 18
