"""Helpers for the perimeter tests: every write route of the app, and row counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.routes.webhooks import CONNECT_PATH, PLATFORM_PATH

WEBHOOK_PATHS = (PLATFORM_PATH, CONNECT_PATH)
# As api/security.py spells them (written out: these tests also run on code without it).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON, BODY_TYPES, ORIGIN_ONLY = "application/json", "body_types", "origin_only"
_PARAM = re.compile(r"\{\w+:\w+\}")


@dataclass(frozen=True)
class WriteRoute:
    method: str
    path: str  # concrete: every path parameter is 1
    body_types: tuple[str, ...]
    origin_only: bool

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def write_routes(app: Litestar) -> list[WriteRoute]:
    """Every state-changing route the app serves, from its route table (so a new route is
    covered without touching the tests), the Stripe webhooks excepted."""
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path in WEBHOOK_PATHS:
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods & UNSAFE_METHODS):
                out.append(
                    WriteRoute(
                        method,
                        _PARAM.sub("1", route.path),
                        tuple(handler.opt.get(BODY_TYPES, (JSON,))),
                        bool(handler.opt.get(ORIGIN_ONLY)),
                    )
                )
    return sorted(out, key=str)


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows in every table (alembic's excepted)."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version' ORDER BY 1"
                )
            )
        ).scalars()
        counts = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in tables)
        return {str(t): int(n) for t, n in (await conn.execute(text(counts))).all()}
