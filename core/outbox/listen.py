"""``coachpay events listen --forward-to URL``: new events, signed, to a developer's receiver.

Like ``stripe listen``: it polls ``GET /v1/admin/events`` with an admin token
(nothing is registered on the server, so nothing is left behind), signs each
event with a secret of its own (printed at start, or ``--secret``) in the
Standard Webhooks format, and POSTs it to the URL, printing one line per
event and one per answer. A failed forward is printed and not retried: it is
a developer's tool, and ``--from-start`` replays everything still kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from core.outbox import catalog, signing

PAGE = 100
POLL_SECONDS = 1.0


class ListenError(Exception):
    """The API refused (bad token, not an admin, unreachable)."""


async def _page(
    api: httpx.AsyncClient, after: str, types: Sequence[str]
) -> tuple[list[dict[str, Any]], str]:
    params = {"after": after, "limit": str(PAGE)}
    if types:
        params["type"] = ",".join(types)
    try:
        r = await api.get("/v1/admin/events", params=params)
    except httpx.HTTPError as exc:
        raise ListenError(f"cannot reach the API: {exc}") from exc
    if r.status_code != 200:
        raise ListenError(f"the API answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    return list(body["data"]), str(body["next_cursor"])


async def forward(
    target: httpx.AsyncClient, url: str, event: dict[str, Any], secret: str, now: datetime
) -> int | str:
    """POST one event, signed; the status code, or what went wrong."""
    body = catalog.body(event)
    headers = signing.headers(str(event["id"]), now, body, [secret])
    try:
        r = await target.post(url, content=body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return r.status_code


async def listen(
    *,
    api: httpx.AsyncClient,
    target: httpx.AsyncClient,
    forward_to: str,
    secret: str,
    types: Sequence[str] = (),
    from_start: bool = False,
    out: TextIO,
    stop: asyncio.Event | None = None,
    max_polls: int | None = None,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    poll_seconds: float = POLL_SECONDS,
) -> int:
    """Forward until ``stop`` (or ``max_polls`` empty polls, for tests); the events forwarded."""
    stop = stop or asyncio.Event()
    cursor = "0.0" if from_start else (await _page(api, "latest", ()))[1]
    print(f"Ready! Signing secret {secret} (Ctrl-C to quit)", file=out, flush=True)
    forwarded = polls = 0
    while not stop.is_set():
        data, cursor = await _page(api, cursor, types)
        for event in data:
            print(f"--> {event['type']} [{event['id']}]", file=out, flush=True)
            answer = await forward(target, forward_to, event, secret, wall())
            print(f"<-- [{answer}] POST {forward_to} [{event['id']}]", file=out, flush=True)
            forwarded += 1
        if len(data) == PAGE:
            continue
        polls += 1
        if max_polls is not None and polls >= max_polls:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_seconds)
    return forwarded


def add_parser(events: argparse.ArgumentParser) -> None:
    """``coachpay events listen`` (api/cli.py hands us its ``events`` parser)."""
    sub = events.add_subparsers(dest="events_command", required=True)
    p = sub.add_parser("listen", help="forward new events, signed, to a local URL")
    p.add_argument("--forward-to", required=True, help="where to POST each event")
    p.add_argument("--api-url", help="coachpay's URL (default: COACHPAY_PUBLIC_URL)")
    p.add_argument("--token", help="an admin token (default: COACHPAY_TOKEN, or one minted here)")
    p.add_argument("--secret", help="the signing secret to use (default: a new one)")
    p.add_argument("--events", default="", help="comma-separated event types (default: all)")
    p.add_argument("--from-start", action="store_true", help="every event still kept, then new")


def run(args: argparse.Namespace, *, api_url: str, token: str) -> int:
    """The command's body: until Ctrl-C."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api,
            httpx.AsyncClient(timeout=10, trust_env=False) as target,
        ):
            try:
                await listen(
                    api=api, target=target, forward_to=args.forward_to,
                    secret=args.secret or signing.new_secret(),
                    types=[t for t in args.events.split(",") if t], from_start=args.from_start,
                    out=sys.stdout, stop=stop,
                )  # fmt: skip
            except ListenError as exc:
                print(f"coachpay events listen: {exc}", file=sys.stderr)
                return 1
        return 0

    return asyncio.run(main())
