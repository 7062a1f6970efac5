"""One payout (``GET /v1/payouts/{id}``), the object outgoing ``payout.*`` events link to.

Its coach, finance and admin see it; another coach gets 404, as for a payout
that does not exist (an id says nothing of whose it is).
"""

from __future__ import annotations

import msgspec
from litestar import Router, get

from api.deps import AuthUser, DbSession, require_role
from api.routes.bookings import Id
from api.routes.coach_money import PayoutOut
from core.users import Role
from payouts import views
from payouts.errors import PayoutNotFound


class PayoutDetailOut(msgspec.Struct):
    coach_id: int
    payout: PayoutOut


@get("/payouts/{payout_id:int}", guards=[require_role(Role.COACH, Role.FINANCE, Role.ADMIN)])
async def get_payout(payout_id: Id, db: DbSession, current_user: AuthUser) -> PayoutDetailOut:
    found = await views.get_payout(db, payout_id)
    if found is None or (current_user.role == Role.COACH and found[0] != current_user.id):
        raise PayoutNotFound(f"payout {payout_id} does not exist")
    coach_id, p = found
    return PayoutDetailOut(
        coach_id=coach_id,
        payout=PayoutOut(**{f: getattr(p, f) for f in PayoutOut.__struct_fields__}),
    )


router = Router(path="/v1", route_handlers=[get_payout])
