"""The Litestar application factory (nothing is built at import time)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from litestar import Litestar
from litestar.datastructures import State
from litestar.types import (
    ControllerRouterHandler,
    LifeSpanReceive,
    LifeSpanScope,
    LifeSpanSend,
    Receive,
    Scope,
    Send,
)

from api.deps import dependencies
from api.errors import EXCEPTION_HANDLERS
from api.logs import bind_path_ids, configure_logging, log_format, with_request_id
from api.metrics import router as metrics_router
from api.openapi_errors import declare_error_responses, openapi_config
from api.routes import ROUTERS
from api.routes.pages_base import TEMPLATES_ENGINE as page_templates
from api.routes.webhooks import CONNECT_PATH, PLATFORM_PATH, WebhookFastPath
from api.runtime import Runtime
from api.security import (
    PERIMETER,
    Perimeter,
    SecurityHeaders,
    perimeter_guard,
    template_nonce,
)
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024


class CoachpayApp(Litestar):
    """Litestar with the request id and the security headers (api/security.py) wrapped
    around everything, 404s included, and the Stripe webhook POSTs served by
    ``WebhookFastPath`` (see api/routes/webhooks.py)."""

    fast_path: WebhookFastPath | None = None
    _secured: SecurityHeaders | None = None

    async def _litestar(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self._secured is None:
            self._secured = SecurityHeaders(self.fast_path or self._litestar)
        await with_request_id(self._secured, scope, receive, send)  # type: ignore[arg-type]


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    stop_runtime: bool | None = None,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    """The app over ``runtime``, started on startup (if not yet) and stopped on shutdown
    when ``stop_runtime`` (default: only a runtime built here), so tests can share one.
    ``extra_route_handlers``: more routes (test-only routes, plugins)."""
    settings = settings or load_settings()
    settings.check_production()  # no development secret behind a live key or https
    configure_logging(settings.log_level, log_format(settings))
    owns_runtime = runtime is None if stop_runtime is None else stop_runtime
    rt = runtime or Runtime(settings)

    async def on_startup(app: Litestar) -> None:
        await rt.start()
        app.state["ctx"] = rt.context
        app.state["runtime"] = rt

    async def on_shutdown(app: Litestar) -> None:
        if owns_runtime:
            await rt.stop()  # closes the webhook receiver too
        elif rt.started:
            # The receiver's and the reads' pools run on this loop, which ends
            # here; the runtime itself outlives the app (a test client's).
            await rt.inbox.close()
            await rt.reads.close()

    app = CoachpayApp(
        route_handlers=[*ROUTERS, metrics_router, *extra_route_handlers],
        dependencies=dependencies(),
        before_request=bind_path_ids,
        guards=[perimeter_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        state=State({PERIMETER: Perimeter(settings, frozenset({PLATFORM_PATH, CONNECT_PATH}))}),
        logging_config=None,
        debug=False,
    )
    app.fast_path = WebhookFastPath(app._litestar, rt)
    page_templates.register_template_callable("csp_nonce", template_nonce)
    declare_error_responses(app)
    return app
