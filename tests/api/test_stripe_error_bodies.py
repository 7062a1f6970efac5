"""Error bodies never carry our idempotency keys or the Stripe SDK's text (api/errors.py,
core/stripe_errors.public_message); the log keeps the detail."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
import pytest
import respx
from litestar import Router, post
from litestar.testing import AsyncTestClient
from litestar.types import ControllerRouterHandler

from api.deps import AppCtx
from core.errors import Conflict
from core.stripe_errors import StripeRefused
from ledger.errors import IdempotencyConflict

KEY = "refund:12:0:500:0"
REPEATED = "Stripe refused a repeated request that differs from the first"


@post("/refund-direct", status_code=200)
async def refund_direct(ctx: AppCtx) -> dict[str, str]:
    await ctx.gateway.create_refund(
        payment_intent="pi_1", amount=500, metadata={}, idempotency_key=KEY
    )
    return {}


@post("/refund-wrapped", status_code=200)
async def refund_wrapped(ctx: AppCtx) -> dict[str, str]:
    # As sessions.refunds does: a domain error quoting Stripe's message.
    try:
        await ctx.gateway.create_refund(
            payment_intent="pi_1", amount=500, metadata={}, idempotency_key=KEY
        )
    except StripeRefused as exc:
        raise Conflict(f"Stripe refused the refund: {exc.message}") from exc
    return {}


@post("/ledger-conflict", status_code=200)
async def ledger_conflict() -> dict[str, str]:
    raise IdempotencyConflict(f"idempotency key payment:{KEY} was used for other legs")


@pytest.fixture(scope="module")
def extra_routes() -> Sequence[ControllerRouterHandler]:
    return [Router(path="/test", route_handlers=[refund_direct, refund_wrapped, ledger_conflict])]


IDEMPOTENCY = {
    "error": {
        "type": "idempotency_error",
        "message": "Keys for idempotent requests can only be used with the same parameters "
        f"they were first used with. Try using a key other than '{KEY}' if you meant to "
        "execute a different request.",
    }
}
DECLINED = {
    "error": {
        "type": "card_error",
        "code": "charge_disputed",
        "message": f"Charge ch_123 has been charged back; cannot issue a refund ({KEY}).",
    }
}


@pytest.mark.parametrize(
    ("answer", "path", "status", "wanted"),
    [
        (httpx.Response(400, json=IDEMPOTENCY), "/test/refund-direct", 502, REPEATED),
        (httpx.Response(400, json=IDEMPOTENCY), "/test/refund-wrapped", 409,
         f"Stripe refused the refund: {REPEATED}"),
        (httpx.Response(402, json=DECLINED), "/test/refund-wrapped", 409,
         "Stripe refused the refund: the charge is disputed"),
        (httpx.ConnectError("boom"), "/test/refund-direct", 503,
         "Stripe's answer is unknown; retry later"),
        (httpx.Response(500, json={"error": {"message": f"internal {KEY}"}}),
         "/test/refund-direct", 503, "Stripe's answer is unknown; retry later"),
    ],
)  # fmt: skip
async def test_stripe_errors_answer_a_stable_message(
    app_client: AsyncTestClient[object],
    stripe_mock: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
    answer: httpx.Response | Exception,
    path: str,
    status: int,
    wanted: str,
) -> None:
    route = stripe_mock.post("/v1/refunds")
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    with caplog.at_level(logging.WARNING, logger="coachpay.api"):
        r = await app_client.post(path)  # type: ignore[attr-defined]
    assert r.status_code == status, r.text
    assert r.json()["detail"] == wanted
    for leak in (KEY, "stripe.com", "Try using", "ch_123", "let us know"):
        assert leak not in r.text, (leak, r.text)
    if not isinstance(answer, Exception) and answer.status_code < 500:
        assert any(KEY in rec.getMessage() for rec in caplog.records)  # the detail is logged


async def test_ledger_refusals_hide_their_keys(app_client: AsyncTestClient[object]) -> None:
    r = await app_client.post("/test/ledger-conflict")  # type: ignore[attr-defined]
    assert r.status_code == 409
    assert r.json() == {
        "error": "IdempotencyConflict",
        "detail": "the ledger refused this change; nothing was booked",
    }
