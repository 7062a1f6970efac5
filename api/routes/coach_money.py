"""A coach's money: balances, earnings and payouts (``GET /v1/coaches/me/...``).

Amounts are integer minor units with their currency; ``available`` may be
negative after a refund of money already paid out (netted by the next payout).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from litestar.params import QueryParameter

from api.deps import AppCtx, AuthUser, DbSession, provide_current_user, require_role
from core.users import Role
from payouts import views

MAX_ID = 2**63 - 1
Limit = Annotated[int, QueryParameter(name="limit", ge=1, le=views.MAX_PAGE)]
Before = Annotated[int | None, QueryParameter(name="before", ge=1, le=MAX_ID)]


class BalanceOut(msgspec.Struct):
    currency: str
    pending: int
    available: int
    in_transit: int
    paid_out: int
    lifetime_earnings: int
    next_release_at: datetime | None
    next_release_amount: int


class BalancesOut(msgspec.Struct):
    coach_id: int
    balances: list[BalanceOut]
    # Why payouts may not go out now: paused (``payouts_paused_by``: ``admin`` or
    # ``transfer_refusals``, with the reason) or backing off after refused
    # transfers until ``next_payout_attempt_at``.
    payouts_paused: bool = False
    payouts_paused_reason: str | None = None
    payouts_paused_by: str | None = None
    next_payout_attempt_at: datetime | None = None


class EarningOut(msgspec.Struct):
    id: int
    booking_id: int | None
    coaching_session_id: int | None
    currency: str
    gross: int
    platform_fee: int
    share: int
    reduced_before_release: int
    status: str
    available_at: datetime
    released_at: datetime | None
    payout_id: int | None


class EarningsOut(msgspec.Struct):
    data: list[EarningOut]
    has_more: bool


class PayoutOut(msgspec.Struct):
    id: int
    currency: str
    amount: int
    status: str
    stripe_transfer_id: str | None
    created_at: datetime
    settled_at: datetime | None
    failure_code: str | None
    failure_reason: str | None
    waiting_on_platform_funds: bool
    reversed_amount: int
    retry_of: int | None
    earning_ids: list[int]


class BankPayoutOut(msgspec.Struct):
    stripe_payout_id: str
    currency: str
    amount: int
    status: str
    arrival_date: datetime | None
    failure_code: str | None
    failure_message: str | None


class PayoutsOut(msgspec.Struct):
    data: list[PayoutOut]
    has_more: bool
    # The coach's own payouts from their Stripe balance to their bank.
    bank_payouts: list[BankPayoutOut]


@get("/coaches/me/balance", guards=[require_role(Role.COACH)])
async def my_balance(request: Request[Any, Any, Any], ctx: AppCtx) -> BalancesOut:
    """Polled by coach dashboards. The guard has provisioned the user (by issuer
    and subject); not ``views.coach_balance_of_sub``, which matches ``sub``
    alone: two coaches of one subject under two issuers would read each
    other's balance."""
    user = await provide_current_user(request, ctx)  # cached by the guard
    async with ctx.factory() as db:
        found = user.id, await views.coach_balance(db, user.id)
    coach_id, rows = found
    state = await views.payout_state(ctx.reads.fetch, coach_id, now=ctx.clock.now())
    return BalancesOut(
        coach_id=coach_id,
        balances=[
            BalanceOut(**{f: getattr(b, f) for f in BalanceOut.__struct_fields__}) for b in rows
        ],
        payouts_paused=state.payouts_paused,
        payouts_paused_reason=state.payouts_paused_reason,
        payouts_paused_by=state.payouts_paused_by,
        next_payout_attempt_at=state.next_payout_attempt_at,
    )


@get("/coaches/me/earnings", guards=[require_role(Role.COACH)])
async def my_earnings(
    db: DbSession, current_user: AuthUser, limit: Limit = 50, before: Before = None
) -> EarningsOut:
    rows = await views.list_earnings(db, current_user.id, limit=limit + 1, before_id=before)
    return EarningsOut(
        data=[
            EarningOut(
                id=e.id,
                booking_id=e.booking_id,
                coaching_session_id=e.coaching_session_id,
                currency=e.currency,
                gross=e.gross,
                platform_fee=e.platform_fee,
                share=e.amount,
                reduced_before_release=e.reduced_before_release,
                status=e.status,
                available_at=e.available_at,
                released_at=e.released_at,
                payout_id=e.payout_id,
            )
            for e in rows[:limit]
        ],
        has_more=len(rows) > limit,
    )


@get("/coaches/me/payouts", guards=[require_role(Role.COACH)])
async def my_payouts(
    db: DbSession, current_user: AuthUser, limit: Limit = 50, before: Before = None
) -> PayoutsOut:
    rows = await views.list_payouts(db, current_user.id, limit=limit + 1, before_id=before)
    bank = await views.list_bank_payouts(db, current_user.id)
    return PayoutsOut(
        data=[
            PayoutOut(**{f: getattr(p, f) for f in PayoutOut.__struct_fields__})
            for p in rows[:limit]
        ],
        has_more=len(rows) > limit,
        bank_payouts=[
            BankPayoutOut(**{f: getattr(b, f) for f in BankPayoutOut.__struct_fields__})
            for b in bank
        ],
    )


router = Router(path="/v1", route_handlers=[my_balance, my_earnings, my_payouts])
