"""Run the emulator: in a background thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from emulator.app import EmulatorApp
from emulator.config import Config
from emulator.store import Store


class EmulatorServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        platform_webhook_url: str | None = None,
        connect_webhook_url: str | None = None,
        platform_secret: str = "whsec_coachpay_platform_dev",
        connect_secret: str = "whsec_coachpay_connect_dev",
        seed: int = 0,
        config: Config | None = None,
        log_level: str = "warning",
    ) -> None:
        self.config = config or Config()
        self.config.platform_webhook_url = platform_webhook_url or self.config.platform_webhook_url
        self.config.connect_webhook_url = connect_webhook_url or self.config.connect_webhook_url
        self.config.platform_secret = platform_secret
        self.config.connect_secret = connect_secret
        self.host = host
        self.port = port
        self.app = EmulatorApp(self.config, seed)
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    @property
    def state(self) -> Store:
        return self.app.store

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level=self._log_level,
            access_log=False,  # the benchmark sends thousands of requests: no per-request logs
            lifespan="on",
            http="h11",
            loop="asyncio",
            timeout_keep_alive=60,
            # A request held by a `timeout` fault must not hold up stop() for 30 s.
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Serve in a background thread (own event loop); return once listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        # Bind here so port 0 resolves to a real port before anyone asks for base_url.
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it Nagle + delayed ACKs add ~40 ms to every response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        server = self._uvicorn()
        self._server = server

        def run() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name="stripe-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("Stripe emulator failed to start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        self._server = None
        self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C / SIGTERM)."""
        self._uvicorn().run()

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the control API (`path` relative to `/_emulator`), returning the decoded JSON."""
        if self._http is None:
            # One pooled client: building an httpx client (TLS context) per call costs ~50 ms.
            self._http = httpx.Client(timeout=60)
        url = f"{self.base_url}/_emulator/{path.lstrip('/')}"
        response = self._http.request(method, url, json=body)
        response.raise_for_status()
        return response.json()

    def flush_webhooks(self, timeout: float = 30.0) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "webhooks/flush", {"timeout": timeout})
        return result

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
