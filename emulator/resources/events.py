"""Events as the API shows them (delivery lives in emulator.webhooks)."""

from __future__ import annotations

from emulator.forms import get_str
from emulator.resources.common import fetch, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Obj


def register(router: Router) -> None:
    router.add("GET", "/v1/events", list_events)
    router.add("GET", "/v1/events/{id}", get_event)


def list_events(ctx: Ctx) -> Obj:
    event_type = get_str(ctx.params, "type")
    key = f"events:type:{event_type}" if event_type else "events"
    return list_response(ctx, "/v1/events", key, ("type", "types", "delivery_success"))


def get_event(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(ctx, fetch(ctx, "events", "event", ctx.arg("id"), "id"))
