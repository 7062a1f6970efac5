"""Litestar dependencies shared by every route module.

Declare them by name in a handler's signature:
``db`` (AsyncSession, one transaction per request: commit on success,
rollback on error), ``current_user`` (CurrentUser, 401 without a valid token),
``ctx`` (AppContext: settings, factory, gateway, clock, registry).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import CurrentUser, current_user_of, require_role
from api.context import AppContext
from core.errors import InvalidInput
from core.users import Role

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
    "read_json",
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
    return await current_user_of(request, ctx)


T = TypeVar("T")
_FIELD_PATH = re.compile(r"`\$\.([A-Za-z_]+)")


async def read_json(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """The one decoder of JSON request bodies (its content type was checked before
    anything ran, api/security.py).

    Strict (a ``"100"`` is not a number); an empty body means ``{}``; anything
    that is not valid JSON in valid UTF-8 is a 422, and a bad field names itself.
    """
    body = await request.body()
    try:
        return msgspec.json.decode(body if body.strip() else b"{}", type=type_, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _FIELD_PATH.search(message)
        field = found.group(1) if found else None
        if field is None and "missing required field" in message and "`" in message:
            field = message.split("`")[1]
        raise InvalidInput(message, field=field) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec checks UTF-8 only inside strings, and raises the codec's error.
        raise InvalidInput("request body is not valid JSON (UTF-8)") from None


def dependencies() -> dict[str, Provide]:
    return {
        "ctx": Provide(provide_ctx, sync_to_thread=False),
        "db": Provide(provide_db),
        "current_user": Provide(provide_current_user),
    }
