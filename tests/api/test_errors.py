"""Every error has the body {"error", "detail"} and a fitting status; no tracebacks leak."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
import pytest
from litestar import Litestar, Router, get, post
from litestar.params import FromPath, JSONBody
from litestar.testing import AsyncTestClient
from litestar.types import ControllerRouterHandler

from core.errors import Conflict, Forbidden, InsufficientBalance, InvalidInput, NotFound
from core.stripe_errors import StripeBalanceInsufficient, StripeOutcomeUnknown, StripeRefused


class Thing(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    amount: Annotated[int, msgspec.Meta(gt=0)]


@post("/things", status_code=201)
async def create_thing(data: JSONBody[Thing]) -> Thing:
    return data


ERRORS: dict[str, Exception] = {
    "not-found": NotFound("no such thing"),
    "forbidden": Forbidden("not yours"),
    "invalid": InvalidInput("must be positive", field="amount"),
    "conflict": Conflict("already cancelled"),
    "insufficient": InsufficientBalance("only 5 usd available"),
    "unknown": StripeOutcomeUnknown("timed out"),
    "refused": StripeRefused("card_declined", "declined", 402),
    "balance": StripeBalanceInsufficient("balance_insufficient", "short", 400),
    "boom": RuntimeError("secret internals /etc/passwd"),
}


@get("/raise/{kind:str}")
async def raise_it(kind: FromPath[str]) -> None:
    raise ERRORS[kind]


@pytest.fixture(scope="module")
def extra_routes() -> Sequence[ControllerRouterHandler]:
    return [Router(path="/test", route_handlers=[create_thing, raise_it])]


def _shape(body: object) -> None:
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, body


async def test_unknown_route_404(shared_app_client: AsyncTestClient[Litestar]) -> None:
    resp = await shared_app_client.get("/v1/no-such-thing")
    assert resp.status_code == 404
    _shape(resp.json())
    assert resp.json()["error"] == "NotFound"


async def test_wrong_method_405(shared_app_client: AsyncTestClient[Litestar]) -> None:
    resp = await shared_app_client.get("/v1/webhooks/stripe")
    assert resp.status_code == 405
    _shape(resp.json())
    assert resp.json()["error"] == "MethodNotAllowed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "amount"),
        ({"name": "x", "amount": "five"}, "amount"),
        ({"name": "x", "amount": [1]}, "amount"),
        ({"name": "x", "amount": 1.5}, "amount"),
        ({"name": "x", "amount": -1}, "amount"),
        ({"name": "", "amount": 1}, "name"),
        ({"name": "x" * 21, "amount": 1}, "name"),
        ({"name": "x", "amount": 1, "evil": "<script>"}, "evil"),
    ],
)
async def test_validation_422_names_the_field(
    shared_app_client: AsyncTestClient[Litestar], body: dict[str, object], field: str
) -> None:
    resp = await shared_app_client.post("/test/things", json=body)
    assert resp.status_code == 422, resp.text
    _shape(resp.json())
    assert resp.json()["error"] == "ValidationError"
    assert field in resp.json()["detail"]


async def test_valid_body_passes(shared_app_client: AsyncTestClient[Litestar]) -> None:
    resp = await shared_app_client.post("/test/things", json={"name": "x", "amount": 3})
    assert resp.status_code == 201 and resp.json() == {"name": "x", "amount": 3}


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b"null"])
async def test_malformed_body_is_4xx(
    shared_app_client: AsyncTestClient[Litestar], content: bytes
) -> None:
    resp = await shared_app_client.post(
        "/test/things", content=content, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code in (400, 422), resp.text
    _shape(resp.json())


async def test_oversized_body_413(shared_app_client: AsyncTestClient[Litestar]) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'", "amount": 1}'
    resp = await shared_app_client.post(
        "/test/things", content=big, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    _shape(resp.json())


@pytest.mark.parametrize(
    ("kind", "status", "name"),
    [
        ("not-found", 404, "NotFound"),
        ("forbidden", 403, "Forbidden"),
        ("invalid", 422, "InvalidInput"),
        ("conflict", 409, "Conflict"),
        ("insufficient", 409, "InsufficientBalance"),
        ("unknown", 503, "StripeOutcomeUnknown"),
        ("refused", 502, "StripeRefused"),
        ("balance", 502, "StripeBalanceInsufficient"),
    ],
)
async def test_domain_errors_map_by_base_class(
    shared_app_client: AsyncTestClient[Litestar], kind: str, status: int, name: str
) -> None:
    resp = await shared_app_client.get(f"/test/raise/{kind}")
    assert resp.status_code == status
    assert resp.json()["error"] == name
    _shape(resp.json())


async def test_unexpected_error_500_without_traceback(
    shared_app_client: AsyncTestClient[Litestar],
) -> None:
    resp = await shared_app_client.get("/test/raise/boom", headers={"X-Request-ID": "abc-42"})
    assert resp.status_code == 500
    assert resp.json() == {"error": "InternalError", "detail": "request id abc-42"}
    assert "passwd" not in resp.text and "Traceback" not in resp.text
