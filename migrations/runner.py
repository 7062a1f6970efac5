"""Run Alembic from code (``coachpay db upgrade``, tests) without an alembic.ini."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

log = logging.getLogger("coachpay.migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes["url"] = url
    return cfg


@functools.cache
def head_revision() -> str:
    """The revision ``upgrade`` goes to (read from the migration files once)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(url: str) -> str | None:
    """The database's revision (None: never migrated)."""
    import psycopg

    from core.rawpool import libpq_url

    with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to ``revision``; (revision before, revision after). One log line when
    something was applied (Alembic's own per-revision lines are left at INFO)."""
    before = current_revision(url)
    command.upgrade(alembic_config(url), revision)
    after = current_revision(url)
    if before != after:
        log.info("database migrated from %s to %s", before or "an empty schema", after)
    return before, after


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
