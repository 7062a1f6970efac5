"""Admin: a user's role. A role is fixed when the user is first seen (a token
claiming another is refused, core/users.py); changing it is this admin action,
audited. ``PATCH /v1/admin/users/{user_id}`` ``{"role"}``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Router, patch
from litestar.params import Parameter

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from core.users import Role, change_role


class RoleChange(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["mentee", "coach", "finance", "admin"]


class UserOut(msgspec.Struct):
    id: int
    issuer: str
    sub: str
    role: str


@patch(
    "/users/{user_id:int}",
    guards=[require_role(Role.ADMIN)],
    request_max_body_size=1024,
    opt={REQUEST_BODY: RoleChange},
)
async def set_role(
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    user_id: int = Parameter(title="user id"),
) -> UserOut:
    body = await read_json(request, RoleChange)
    user = await change_role(
        db, user_id=user_id, role=body.role, actor_user_id=current_user.id, now=ctx.clock.now()
    )
    return UserOut(id=user.id, issuer=user.issuer, sub=user.sub, role=user.role)


router = Router(path="/v1/admin", route_handlers=[set_role])
