# ruff: noqa: F811  (pytest fixtures imported from tests/api/conftest.py)
"""``coachpay events listen``: polls the API, forwards new events signed with its own secret."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from api.runtime import Runtime
from core.outbox import signing
from core.outbox.listen import ListenError, listen
from core.outbox.sender import new_client
from tests.api.conftest import (  # noqa: F401  (fixtures)
    Tokens,
    api_clock,
    api_settings,
    app,
    app_client,
    app_runtime,
    extra_routes,
    handler_registry,
    tokens,
    webhook_processing,
)
from tests.outbox.helpers import emit
from tests.outbox.receiver import Receiver

Client = AsyncTestClient[Litestar]


class Out(io.StringIO):
    """The command's output, with events for the lines a test waits on."""

    def __init__(self, answers: int) -> None:
        super().__init__()
        self.ready, self.done, self.left = asyncio.Event(), asyncio.Event(), answers

    def write(self, s: str) -> int:
        if s.startswith("Ready!"):
            self.ready.set()
        if s.startswith("<--"):
            self.left -= 1
            if self.left == 0:
                self.done.set()
        return super().write(s)


async def test_forwards_only_new_events_signed_with_the_printed_secret(
    app_client: Client, tokens: Tokens, app_runtime: Runtime, api_clock: Any
) -> None:
    factory = app_runtime.context.factory
    await emit(factory, api_clock.now(), 1, type="booking.pending")  # before: not forwarded
    receiver = Receiver().start()
    secret = signing.new_secret()
    receiver.secret = secret
    out, stop = Out(answers=2), asyncio.Event()
    app_client.headers.update(tokens.headers("admin"))
    try:
        async with new_client() as target:
            task = asyncio.create_task(
                listen(
                    api=app_client,
                    target=target,
                    forward_to=receiver.url,
                    secret=secret,
                    types=["booking.paid"],
                    out=out,
                    stop=stop,
                    poll_seconds=0.0,
                )
            )
            await asyncio.wait_for(out.ready.wait(), 30)
            await emit(factory, api_clock.now(), 2)
            await emit(factory, api_clock.now(), 1, type="payout.paid")  # not asked for
            await asyncio.wait_for(out.done.wait(), 60)
            stop.set()
            assert await asyncio.wait_for(task, 30) == 2
    finally:
        receiver.stop()
    assert secret in out.getvalue() and "--> booking.paid [evt_" in out.getvalue()
    assert [r.verified for r in receiver.requests] == [True, True]
    for r in receiver.requests:
        assert Webhook(secret).verify(r.body, r.headers)["type"] == "booking.paid"


async def test_a_non_admin_token_is_refused(app_client: Client, tokens: Tokens) -> None:
    app_client.headers.update(tokens.headers("finance"))
    async with new_client() as target:
        with pytest.raises(ListenError, match="403"):
            await listen(
                api=app_client, target=target, forward_to="http://127.0.0.1:9/",
                secret=signing.new_secret(), out=io.StringIO(), max_polls=1,
            )  # fmt: skip
