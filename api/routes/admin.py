"""Admin: a coach's profile (fee rate, hold, payout schedule, minimum, pause) and account.

``PATCH /v1/admin/coaches/{id}`` takes a JSON object with any of ``fee_bps``
(0..10000), ``hold_hours`` (0..2160), ``payout_schedule`` (instant, daily,
weekly, monthly), ``minimum_payout`` ({"usd": 5000, ...}, replaces the whole
map), ``payouts_paused`` and ``payouts_paused_reason`` (needed to pause).
Validation happens in connect.profile, all or nothing; every change is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, patch
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AppCtx, AuthUser, DbSession, read_json, require_role
from api.logs import current_request_id
from api.openapi_errors import REQUEST_BODY
from api.routes.coaches import AccountOut, account_out
from connect import service
from connect.errors import CoachNotFound, NotACoach
from connect.profile import (
    MAX_FEE_BPS,
    MAX_HOLD_HOURS,
    MAX_REASON_LENGTH,
    get_profile,
    validate_changes,
)
from core.errors import InvalidInput
from core.settings import Settings
from core.users import Role, get_user

MAX_BODY_BYTES = 16 * 1024
# Path ids are BIGINT: anything larger cannot exist, answer 404 without a query.
MAX_ID = 2**63 - 1
CoachId = int


class ProfileOut(msgspec.Struct):
    coach_id: int
    fee_bps: int
    hold_hours: int
    payout_schedule: str
    minimum_payout: dict[str, int]
    payouts_paused: bool
    payouts_paused_reason: str | None
    updated_at: datetime | None
    # admin | system | transfer_refusals (paused by Stripe's refusals, payouts/refusals.py)
    payouts_paused_by: str | None = None
    payout_refusals: int = 0  # transfers Stripe refused in a row
    next_payout_attempt_at: datetime | None = None  # the refusal backoff: none before
    last_payout_refusal: str | None = None


class CoachOut(msgspec.Struct):
    profile: ProfileOut
    account: AccountOut


async def _require_coach(db: AsyncSession, coach_id: int) -> None:
    """404 for an id that is not a coach (an admin asking about a mentee id is a miss)."""
    if not 1 <= coach_id <= MAX_ID:
        raise CoachNotFound(f"no coach {coach_id}")
    user = await get_user(db, coach_id)
    if user is None or user.role != Role.COACH:
        raise CoachNotFound(f"no coach {coach_id}")


async def _coach_out(db: AsyncSession, coach_id: int, settings: Settings) -> CoachOut:
    profile = await get_profile(db, coach_id)
    if profile is None:
        # Not onboarded and never edited: the platform defaults apply.
        out = ProfileOut(
            coach_id=coach_id,
            fee_bps=settings.platform_fee_bps,
            hold_hours=settings.hold_hours,
            payout_schedule="daily",
            minimum_payout={},
            payouts_paused=False,
            payouts_paused_reason=None,
            updated_at=None,
        )
    else:
        out = ProfileOut(
            coach_id=coach_id,
            fee_bps=profile.fee_bps,
            hold_hours=profile.hold_hours,
            payout_schedule=profile.payout_schedule,
            minimum_payout=dict(profile.minimum_payout or {}),
            payouts_paused=profile.payouts_paused,
            payouts_paused_reason=profile.payouts_paused_reason,
            updated_at=profile.updated_at,
            payouts_paused_by=profile.payouts_paused_by,
            payout_refusals=profile.payout_refusals,
            next_payout_attempt_at=profile.payout_retry_at,
            last_payout_refusal=profile.payout_last_refusal,
        )
    # No gateway: an admin gets the status, not a login link into the coach's dashboard.
    view = await service.get_account_view(db, coach_id=coach_id, gateway=None)
    return CoachOut(profile=out, account=account_out(view))


Schedule = Literal["instant", "daily", "weekly", "monthly"]  # connect.profile.PAYOUT_SCHEDULES


class ProfileChanges(msgspec.Struct, forbid_unknown_fields=True):
    """The fields a PATCH may change (documented in /schema; checked by validate_changes,
    which also refuses an empty change)."""

    fee_bps: Annotated[int, msgspec.Meta(ge=0, le=MAX_FEE_BPS)] | msgspec.UnsetType = msgspec.UNSET
    hold_hours: Annotated[int, msgspec.Meta(ge=0, le=MAX_HOLD_HOURS)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    payout_schedule: Schedule | msgspec.UnsetType = msgspec.UNSET
    # currency (3 lowercase letters) -> minor units
    minimum_payout: dict[str, Annotated[int, msgspec.Meta(ge=0)]] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    payouts_paused: bool | msgspec.UnsetType = msgspec.UNSET
    payouts_paused_reason: (
        Annotated[str, msgspec.Meta(max_length=MAX_REASON_LENGTH)] | msgspec.UnsetType | None
    ) = msgspec.UNSET


async def _changes(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body: Any = await read_json(request, dict[str, Any])
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


@get("/admin/coaches/{coach_id:int}", guards=[require_role(Role.ADMIN)])
async def get_coach(
    db: DbSession, ctx: AppCtx, coach_id: CoachId = Parameter(title="coach (user) id")
) -> CoachOut:
    await _require_coach(db, coach_id)
    return await _coach_out(db, coach_id, ctx.settings)


@patch(
    "/admin/coaches/{coach_id:int}",
    guards=[require_role(Role.ADMIN)],
    request_max_body_size=MAX_BODY_BYTES,
    opt={REQUEST_BODY: ProfileChanges},
)
async def patch_coach(
    request: Request[Any, Any, Any],
    db: DbSession,
    current_user: AuthUser,
    ctx: AppCtx,
    coach_id: CoachId = Parameter(title="coach (user) id"),
) -> CoachOut:
    changes = await _changes(request)
    validate_changes(changes)  # 422 before anything is looked up or written
    await _require_coach(db, coach_id)
    now = ctx.clock.now()
    try:
        await service.ensure_profile(db, user_id=coach_id, settings=ctx.settings, now=now)
    except NotACoach:
        raise CoachNotFound(f"no coach {coach_id}") from None
    await service.update_profile(
        db,
        coach_id=coach_id,
        changes=changes,
        actor_id=current_user.id,
        now=now,
        cause=f"request {current_request_id() or '-'}",
    )
    return await _coach_out(db, coach_id, ctx.settings)


router = Router(path="/v1", route_handlers=[get_coach, patch_coach])
