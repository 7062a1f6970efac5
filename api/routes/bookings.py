"""Routes of this feature (stub created by the API skeleton; owned by the sessions engineer)."""

from __future__ import annotations

from litestar import Router

router = Router(path="/v1", route_handlers=[])
