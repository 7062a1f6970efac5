"""A tiny path router and the request/response types handlers see.

A hand-rolled router (rather than a web framework) keeps full control of the wire format (Stripe's
form bodies and error shapes, dropped connections) and costs next to nothing per request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.store import Store

if TYPE_CHECKING:
    from emulator.app import EmulatorApp


@dataclass
class Ctx:
    method: str
    path: str
    path_params: dict[str, str]
    params: dict[str, Any]
    headers: dict[str, str]
    query: dict[str, Any]
    base_url: str
    store: Store
    app: EmulatorApp
    stripe_account: str | None = None

    def arg(self, name: str) -> str:
        return self.path_params[name]


@dataclass
class Resp:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Result = dict[str, Any] | Resp
SyncHandler = Callable[[Ctx], Result]
AsyncHandler = Callable[[Ctx], Awaitable[Result]]
Handler = SyncHandler | AsyncHandler


@dataclass
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    is_async: bool


class Router:
    def __init__(self) -> None:
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, is_async: bool = False) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        route = Route(method, template, re.compile(regex), handler, is_async)
        if "{" in template:
            self._dynamic.append(route)
        else:
            self._static[(method, template)] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        route = self._static.get((method, path))
        if route is not None:
            return route, {}
        for candidate in self._dynamic:
            if candidate.method != method:
                continue
            found = candidate.pattern.match(path)
            if found is not None:
                return candidate, found.groupdict()
        return None

    def path_known(self, path: str) -> bool:
        return any(key[1] == path for key in self._static) or any(
            r.pattern.match(path) for r in self._dynamic
        )
