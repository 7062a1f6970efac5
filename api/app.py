"""The Litestar application factory (nothing is built at import time)."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from api.deps import dependencies
from api.errors import EXCEPTION_HANDLERS
from api.logs import configure_logging, request_id_middleware
from api.routes import ROUTERS
from api.runtime import Runtime
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Litestar:
    """The app over ``runtime`` (started on startup; stopped on shutdown only if built here)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    owns_runtime = runtime is None
    rt = runtime or Runtime(settings)

    async def on_startup(app: Litestar) -> None:
        await rt.start()
        app.state["ctx"] = rt.context
        app.state["runtime"] = rt

    async def on_shutdown(app: Litestar) -> None:
        if owns_runtime:
            await rt.stop()

    return Litestar(
        route_handlers=list(ROUTERS),
        dependencies=dependencies(),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_id_middleware],
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=OpenAPIConfig(
            title="coachpay",
            version="0.1.0",
            description="Marketplace payout engine on Stripe Connect",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        request_max_body_size=MAX_BODY_BYTES,
        state=State({}),
        logging_config=None,
        debug=False,
    )
