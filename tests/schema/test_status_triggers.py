"""Migration 0016's frozen transition tables equal the Python ones, and its
triggers refuse what the tables do not allow."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.models import EARNING_ALLOWED, EarningStatus
from payouts.models import PAYOUT_ALLOWED, PayoutStatus

MIGRATION = Path(__file__).resolve().parents[2] / "migrations/versions/0016_status_enums.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0016", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _as_sets(table: dict[str, tuple[str, ...]]) -> dict[str, set[str]]:
    return {k: set(v) for k, v in table.items()}


def _python(table: Mapping[Any, frozenset[Any]]) -> dict[str, set[str]]:
    return {str(k): {str(v) for v in vs} for k, vs in table.items()}


def test_the_migration_holds_the_payout_table() -> None:
    assert _as_sets(_migration().PAYOUT_ALLOWED) == _python(PAYOUT_ALLOWED)


def test_the_migration_holds_the_earning_table() -> None:
    assert _as_sets(_migration().EARNING_ALLOWED) == _python(EARNING_ALLOWED)


NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


async def _payout(db: AsyncSession, status: str) -> int:
    row = await db.execute(
        text(
            "INSERT INTO payouts (coach_id, currency, amount, status, destination, "
            "stripe_transfer_id, created_at, updated_at) "
            "VALUES (1, 'usd', 100, :s, 'acct_1', 'tr_' || gen_random_uuid(), :now, :now) "
            "RETURNING id"
        ),
        {"s": status, "now": NOW},
    )
    return int(row.scalar_one())


async def _earning(db: AsyncSession, status: str) -> int:
    row = await db.execute(
        text(
            "INSERT INTO earnings (coach_id, currency, gross, platform_fee, amount, "
            "available_at, status, created_at) "
            "VALUES (1, 'usd', 100, 10, 90, :now, :s, :now) RETURNING id"
        ),
        {"s": status, "now": NOW},
    )
    return int(row.scalar_one())


@pytest.mark.parametrize("start", list(PayoutStatus))
@pytest.mark.parametrize("to", list(PayoutStatus))
async def test_payout_trigger_follows_the_table(
    db: AsyncSession, start: PayoutStatus, to: PayoutStatus
) -> None:
    # One open payout per coach (uq_payouts_open): each case in its own savepoint.
    async with db.begin_nested() as sp:
        pid = await _payout(db, start)
        update = text("UPDATE payouts SET status = :to WHERE id = :id")
        if to in PAYOUT_ALLOWED[start] or to == start:
            await db.execute(update, {"to": to, "id": pid})
        else:
            with pytest.raises(IntegrityError, match="not an allowed transition"):
                await db.execute(update, {"to": to, "id": pid})
        await sp.rollback()


@pytest.mark.parametrize("start", list(EarningStatus))
@pytest.mark.parametrize("to", list(EarningStatus))
async def test_earning_trigger_follows_the_table(
    db: AsyncSession, start: EarningStatus, to: EarningStatus
) -> None:
    async with db.begin_nested() as sp:
        eid = await _earning(db, start)
        update = text("UPDATE earnings SET status = :to WHERE id = :id")
        if to in EARNING_ALLOWED[start] or to == start:
            await db.execute(update, {"to": to, "id": eid})
        else:
            with pytest.raises(IntegrityError, match="not an allowed transition"):
                await db.execute(update, {"to": to, "id": eid})
        await sp.rollback()
