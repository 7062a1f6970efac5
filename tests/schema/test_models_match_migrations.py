"""The hand-written ORM models describe the schema ``alembic upgrade head`` builds.

Alembic's autogenerate comparison runs against a fresh database; any difference
(table, column, type, nullability, index, unique constraint, foreign key) fails.
What SQLAlchemy cannot model, or what is deliberately not modelled, is listed
below with the reason.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import connect.models
import core.api_keys
import core.audit
import core.inbox_models
import core.outbox.models
import core.users
import ledger.models
import payouts.models
import sessions.models
from core.db import Base, async_url
from migrations.runner import upgrade
from tests.dbutil import create_database, drop_database

MODEL_MODULES = (
    connect.models,
    core.api_keys,
    core.audit,
    core.inbox_models,
    core.outbox.models,
    core.users,
    ledger.models,
    payouts.models,
    sessions.models,
)

# Tables only SQL touches: no model, on purpose.
UNMODELLED_TABLES = {
    "coach_money_totals": "maintained by triggers (0007), read by raw SQL in payouts/views.py",
    "job_runs": "written and read by raw SQL (api/jobs.py, observability)",
    "simulated_clock": "a single-row table for the demo clock, raw SQL only",
    "outbox_cursor": "a single-row xid8 cursor of the outbox relay, raw SQL only",
}
# (table, column or index name): what SQLAlchemy cannot reflect or model.
UNMODELLED_PARTS = {
    ("outbox_events", "txid"): "xid8 has no SQLAlchemy type; set by its DEFAULT, read by SQL",
    ("outbox_events", "ix_outbox_events_position"): "an index on the unmodelled txid column",
}


def _name(diff: tuple[Any, ...]) -> tuple[str, str | None, str | None]:
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return kind, diff[1].name, None
    if kind in ("add_column", "remove_column"):
        return kind, diff[2], diff[3].name
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        # Alembic reports a reflected unique constraint without its name.
        columns = "_".join(diff[1].columns.keys())
        name = diff[1].name or f"uq_{diff[1].table.name}_{columns}"
        return kind, diff[1].table.name, name
    if kind in ("add_fk", "remove_fk"):
        return kind, diff[1].parent.name, diff[1].name
    return kind, None, None


def _ignored(diff: tuple[Any, ...]) -> bool:
    _, table, part = _name(diff)
    if diff[0] == "remove_table":
        return table in UNMODELLED_TABLES
    return (table, part) in UNMODELLED_PARTS


@pytest.fixture(scope="module")
def head_url(pg_server_url: str) -> Iterator[str]:
    name = f"coachpay_test_schema_{os.getpid()}"
    url = create_database(pg_server_url, name)
    upgrade(url)
    yield url
    drop_database(pg_server_url, name)


def _differences(url: str) -> list[Any]:
    engine = create_engine(async_url(url))
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            # xid8 (outbox_events.txid, outbox_cursor.txid): reflected as NullType.
            warnings.filterwarnings("ignore", message="Did not recognize type 'xid8'")
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _flat(diffs: list[Any]) -> list[Any]:
    out: list[Any] = []
    for d in diffs:
        # Column modifications come as a list of tuples per column.
        out.extend(d if isinstance(d, list) else [d])
    return out


def test_every_model_module_is_compared() -> None:
    tables = {t for m in MODEL_MODULES for t in vars(m).values() if hasattr(t, "__table__")}
    assert {t.__table__.name for t in tables} <= set(Base.metadata.tables)


def test_models_match_the_migrated_schema(head_url: str) -> None:
    diffs = [d for d in _flat(_differences(head_url)) if not _ignored(d)]
    assert diffs == [], "\n".join(repr(d) for d in diffs)


def test_the_ignore_lists_name_real_things(head_url: str) -> None:
    """An exemption that no longer matches anything is stale and must go."""
    found = {_name(d)[1:] for d in _flat(_differences(head_url))}
    removed_tables = {t for t, _ in found}
    assert set(UNMODELLED_TABLES) <= removed_tables
    assert set(UNMODELLED_PARTS) <= found
