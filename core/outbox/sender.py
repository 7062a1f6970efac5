"""One HTTP attempt of a delivery: check the address, POST to it, keep what the log needs.

The URL is checked again here (``core.outbox.ssrf``) and the request goes to
the checked address itself: the URL's host is replaced by that IP, while the
``Host`` header and, for https, the TLS server name (SNI and certificate
check) stay the registered name. So a name that resolves somewhere else
between the check and the connection (DNS rebinding) is never followed.
Redirects are not followed either (a 3xx is a failed attempt), and proxies
from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from core.outbox import ssrf
from core.outbox.models import Outcome

EXCERPT_BYTES = 1024
MAX_ERROR = 1024
TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
USER_AGENT = "coachpay-webhooks/1"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    latency_ms: int
    error: str | None = None
    excerpt: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


def new_client(*, timeout: float = TIMEOUT_SECONDS, connections: int = 32) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_SECONDS, timeout)),
        follow_redirects=False,
        trust_env=False,  # never through a proxy named in the environment
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def clean(text: str, limit: int) -> str:
    """Storable text: PostgreSQL refuses NUL in TEXT, and the log keeps ``limit`` characters."""
    return text.replace("\x00", "\ufffd")[:limit]


async def _excerpt(response: httpx.Response) -> str:
    # Only the first KiB is read: a receiver answering with a huge body costs nothing.
    got = bytearray()
    async for chunk in response.aiter_raw():
        got += chunk
        if len(got) >= EXCERPT_BYTES:
            break
    return clean(bytes(got[:EXCERPT_BYTES]).decode("utf-8", errors="replace"), EXCERPT_BYTES)


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    body: str,
    headers: dict[str, str],
    allowed: Sequence[ssrf.IPNetwork],
    resolver: ssrf.Resolver | None = None,
    read_timeout: float = TIMEOUT_SECONDS,
) -> AttemptResult:
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        target = await ssrf.check(url, allowed=allowed, resolver=resolver)
    except ssrf.UrlRefused as exc:
        return AttemptResult(Outcome.REFUSED, None, elapsed(), clean(exc.detail, MAX_ERROR))
    pinned = target.url.copy_with(host=target.addresses[0])
    extensions = {}
    if target.url.scheme == "https" and ssrf.literal_ip(target.host) is None:
        extensions["sni_hostname"] = target.host
    request_headers = {
        **headers,
        "host": target.url.netloc.decode("ascii"),
        "user-agent": USER_AGENT,
    }
    try:
        # httpx's timeout bounds each read; this bounds the whole attempt.
        async with asyncio.timeout(read_timeout + CONNECT_TIMEOUT_SECONDS):
            request = client.build_request(
                "POST", pinned, content=body.encode(), headers=request_headers,
                extensions=extensions,
            )  # fmt: skip
            response = await client.send(request, stream=True)
            try:
                excerpt = await _excerpt(response)
            finally:
                await response.aclose()
    except (httpx.TimeoutException, TimeoutError):
        return AttemptResult(Outcome.TIMEOUT, None, elapsed(), "timed out")
    except httpx.HTTPError as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return AttemptResult(Outcome.ERROR, None, elapsed(), clean(detail, MAX_ERROR))
    code = response.status_code
    outcome = Outcome.DELIVERED if 200 <= code < 300 else Outcome.FAILED
    return AttemptResult(outcome, code, elapsed(), None, excerpt)
