"""Admin: API keys for the marketplace's backend (core/api_keys.py).

``POST /v1/admin/api-keys`` ``{"name", "roles"}`` creates one and answers the
key itself, the only time it is shown; ``GET`` lists them (prefix, roles,
last use, never the key); ``DELETE /v1/admin/api-keys/{id}`` revokes one at
once. A backend calls with ``Authorization: Bearer cpk_...`` (api/auth.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.params import Parameter

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from core import api_keys
from core.users import Role

ADMIN = [require_role(Role.ADMIN)]
RoleName = Annotated[str, msgspec.Meta(max_length=16)]


class CreateApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=api_keys.MAX_NAME_LENGTH)]
    roles: Annotated[list[RoleName], msgspec.Meta(min_length=1, max_length=4)]


class ApiKeyOut(msgspec.Struct):
    id: int
    name: str
    prefix: str
    roles: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedApiKey(msgspec.Struct):
    api_key: ApiKeyOut
    key: str  # shown once: only its hash is kept


class ApiKeysOut(msgspec.Struct):
    data: list[ApiKeyOut]


def _out(k: api_keys.ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=k.id, name=k.name, prefix=k.prefix, roles=list(k.roles), created_at=k.created_at,
        last_used_at=k.last_used_at, revoked_at=k.revoked_at,
    )  # fmt: skip


@post(
    "/api-keys",
    guards=ADMIN,
    status_code=201,
    request_max_body_size=4 * 1024,
    opt={REQUEST_BODY: CreateApiKey},
)
async def create_api_key(
    request: Request[Any, Any, Any], db: DbSession, current_user: AuthUser, ctx: AppCtx
) -> CreatedApiKey:
    body = await read_json(request, CreateApiKey)
    row, key = await api_keys.create_key(
        db, name=body.name, roles=body.roles, created_by=current_user.id, now=ctx.clock.now()
    )
    return CreatedApiKey(api_key=_out(row), key=key)


@get("/api-keys", guards=ADMIN)
async def list_api_keys(db: DbSession) -> ApiKeysOut:
    return ApiKeysOut(data=[_out(k) for k in await api_keys.list_keys(db)])


@delete("/api-keys/{key_id:int}", guards=ADMIN, status_code=200, request_max_body_size=1024)
async def revoke_api_key(
    db: DbSession, current_user: AuthUser, ctx: AppCtx, key_id: int = Parameter(title="key id")
) -> ApiKeyOut:
    if not 1 <= key_id < 2**63:
        raise api_keys.ApiKeyNotFound("no such API key")
    row = await api_keys.revoke_key(
        db, key_id=key_id, now=ctx.clock.now(), actor_user_id=current_user.id
    )
    return _out(row)


router = Router(path="/v1/admin", route_handlers=[create_api_key, list_api_keys, revoke_api_key])
