"""Migration 0009 on a database with history: events the old rule gave up on become
parked, events still retried keep a try, paused coaches read as paused by an admin."""

from __future__ import annotations

import os

import psycopg
import pytest

from migrations.runner import downgrade, upgrade
from tests.dbutil import create_database, drop_database

_EVENT = (
    "INSERT INTO webhook_events (stripe_event_id, endpoint, type, payload, received_at, status,"
    " attempts, next_attempt_at) VALUES (%s, 'platform', 't', '{}', now(), 'failed', %s, %s)"
)


def test_0009_parks_given_up_events_and_marks_admin_pauses(pg_server_url: str) -> None:
    name = f"coachpay_test_migration_0009_{os.getpid()}"
    url = create_database(pg_server_url, name)
    try:
        upgrade(url, "0008")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_EVENT, ("evt_given_up", 15, None))
            conn.execute(_EVENT, ("evt_retrying", 12, "2026-01-01T00:00:00Z"))
            conn.execute("INSERT INTO users (id, sub, role) VALUES (1, 'c1', 'coach')")
            conn.execute(
                "INSERT INTO coach_profiles (user_id, payouts_paused, payouts_paused_reason)"
                " VALUES (1, true, 'KYC')"
            )
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = dict(
                conn.execute(
                    "SELECT stripe_event_id, (status, handler_failures, parked_at IS NOT NULL,"
                    " last_attempt_at IS NOT NULL)::text FROM webhook_events"
                ).fetchall()
            )
            assert rows == {"evt_given_up": "(parked,15,t,t)", "evt_retrying": "(failed,7,f,t)"}
            by = conn.execute("SELECT payouts_paused_by FROM coach_profiles").fetchone()
            assert by == ("admin",)
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE webhook_events SET status = 'parked', parked_at = NULL")
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE webhook_events SET status = 'bogus'")
        downgrade(url, "0008")
        with psycopg.connect(url, autocommit=True) as conn:
            back = conn.execute(
                "SELECT status, next_attempt_at FROM webhook_events"
                " WHERE stripe_event_id = 'evt_given_up'"
            ).fetchone()
            assert back == ("failed", None)
    finally:
        drop_database(pg_server_url, name)
