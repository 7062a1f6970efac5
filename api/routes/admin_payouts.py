"""Admin actions on payouts.

``POST /v1/admin/coaches/{id}/payouts/pause`` ``{"reason": "..."}`` stops new
payouts for the coach; ``.../resume`` (optional reason) starts them again and
clears the backoff after refused transfers (payouts/refusals.py), also when
the pause was the refusals' own;
``POST /v1/admin/payouts/{id}/retry`` pays a failed payout again as a new
payout (sent by the next payout run). Each is audited with the admin's id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, post
from litestar.params import Parameter

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.openapi_errors import REQUEST_BODY
from core.errors import InvalidInput
from core.users import Role
from payouts import admin
from payouts.errors import CoachNotFound, PayoutNotFound

MAX_BODY_BYTES = 4 * 1024
MAX_ID = 2**63 - 1


class PauseRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What ``_body`` accepts (documented in /schema; the body is optional)."""

    # Pausing needs one; resuming takes one optionally. Without control characters.
    reason: Annotated[str, msgspec.Meta(max_length=admin.MAX_REASON)] | None = None


class PauseOut(msgspec.Struct):
    coach_id: int
    payouts_paused: bool
    payouts_paused_reason: str | None
    payouts_paused_by: str | None  # admin | system | transfer_refusals
    payout_refusals: int  # transfers Stripe refused in a row (resuming clears them)
    next_payout_attempt_at: datetime | None  # the refusal backoff


class RetryOut(msgspec.Struct):
    payout_id: int
    retry_of: int
    amount: int
    currency: str
    status: str


async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body: Any = await read_json(request, dict[str, Any])
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    unknown = set(body) - {"reason"}
    if unknown:
        raise InvalidInput(f"unknown fields: {sorted(unknown)}")
    return body


def _coach(coach_id: int) -> int:
    if not 1 <= coach_id <= MAX_ID:
        raise CoachNotFound(f"coach {coach_id} not found")
    return coach_id


async def _set(
    request: Request[Any, Any, Any], db: Any, user: Any, ctx: Any, coach_id: int, paused: bool
) -> PauseOut:
    body = await _body(request)
    profile = await admin.set_paused(
        db,
        coach_id=_coach(coach_id),
        paused=paused,
        reason=body.get("reason"),
        now=ctx.clock.now(),
        actor_user_id=user.id,
    )
    return PauseOut(
        coach_id=profile.user_id,
        payouts_paused=profile.payouts_paused,
        payouts_paused_reason=profile.payouts_paused_reason,
        payouts_paused_by=profile.payouts_paused_by,
        payout_refusals=profile.payout_refusals,
        next_payout_attempt_at=profile.payout_retry_at,
    )


@post(
    "/admin/coaches/{coach_id:int}/payouts/pause",
    guards=[require_role(Role.ADMIN)],
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: PauseRequest},
    status_code=200,
)
async def pause(
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    coach_id: int = Parameter(title="coach (user) id"),
) -> PauseOut:
    return await _set(request, db, current_user, ctx, coach_id, True)


@post(
    "/admin/coaches/{coach_id:int}/payouts/resume",
    guards=[require_role(Role.ADMIN)],
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: PauseRequest},
    status_code=200,
)
async def resume(
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    coach_id: int = Parameter(title="coach (user) id"),
) -> PauseOut:
    return await _set(request, db, current_user, ctx, coach_id, False)


@post("/admin/payouts/{payout_id:int}/retry", guards=[require_role(Role.ADMIN)], status_code=202)
async def retry(
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    payout_id: int = Parameter(title="payout id"),
) -> RetryOut:
    if not 1 <= payout_id <= MAX_ID:
        raise PayoutNotFound(f"payout {payout_id} not found")
    made = await admin.retry_payout(
        db, payout_id=payout_id, now=ctx.clock.now(), actor_user_id=current_user.id
    )
    return RetryOut(made.id, payout_id, made.amount, made.currency, made.status)


router = Router(path="/v1", route_handlers=[pause, resume, retry])
