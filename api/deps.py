"""Litestar dependencies shared by every route module.

Declare them by name in a handler's signature:
``db`` (AsyncSession, one transaction per request: commit on success,
rollback on error), ``current_user`` (CurrentUser, 401 without a valid token),
``ctx`` (AppContext: settings, factory, gateway, clock, registry).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import CurrentUser, claims_of, require_role
from api.context import AppContext
from core.users import Role, provision_user

__all__ = [
    "AppContext",
    "AppCtx",
    "AuthUser",
    "CurrentUser",
    "DbSession",
    "Role",
    "dependencies",
    "provide_ctx",
    "provide_current_user",
    "provide_db",
    "require_role",
]

# Annotate handler parameters with these (Litestar 3 drops inferred dependencies):
# ``async def h(data: In, db: DbSession, current_user: AuthUser, ctx: AppCtx) -> Out``.
DbSession = NamedDependency[AsyncSession]
AuthUser = NamedDependency[CurrentUser]
AppCtx = NamedDependency[AppContext]


def provide_ctx(state: State) -> AppContext:
    ctx = state.get("ctx")
    if not isinstance(ctx, AppContext):
        raise RuntimeError("the application runtime is not started")
    return ctx


async def provide_db(ctx: AppCtx) -> AsyncGenerator[AsyncSession, None]:
    """One transaction per request, committed before the response is sent."""
    async with ctx.factory() as session:
        await session.begin()
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def provide_current_user(request: Request[Any, Any, Any], ctx: AppCtx) -> CurrentUser:
    claims = claims_of(request, ctx.tokens)
    # Provisioned in a short transaction of its own: the upsert locks the
    # user's row, which must not be held for the whole request.
    async with ctx.factory() as session, session.begin():
        user = await provision_user(
            session, sub=claims.sub, role=claims.role, email=claims.email, now=ctx.clock.now()
        )
    return CurrentUser(id=user.id, sub=user.sub, role=claims.role)


def dependencies() -> dict[str, Provide]:
    return {
        "ctx": Provide(provide_ctx, sync_to_thread=False),
        "db": Provide(provide_db),
        "current_user": Provide(provide_current_user),
    }
