"""Every route module of the app, listed explicitly (no discovery magic).

Each module exports ``router: litestar.Router``; feature teams own theirs.
"""

from __future__ import annotations

from litestar import Router

from api.routes import (
    admin,
    admin_api_keys,
    admin_events,
    admin_payouts,
    admin_users,
    admin_webhooks,
    booking_history,
    bookings,
    coach_money,
    coaches,
    finance,
    health,
    pages,
    payouts_read,
    sessions,
    webhooks,
)
from api.routes import auth as auth_routes

ROUTERS: list[Router] = [
    health.router,
    auth_routes.router,
    webhooks.router,
    coaches.router,
    admin.router,
    sessions.router,
    bookings.router,
    booking_history.router,
    coach_money.router,
    admin_payouts.router,
    payouts_read.router,
    admin_webhooks.router,
    finance.router,
    admin_events.router,
    admin_api_keys.router,
    admin_users.router,
    pages.router,
]
