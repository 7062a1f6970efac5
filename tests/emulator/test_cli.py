"""`python -m emulator` serves the API until told to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from emulator.cli import build_parser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.seed) == ("127.0.0.1", 12111, 0)
    assert args.platform_secret == "whsec_coachpay_platform_dev"


def test_module_entry_point_serves() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--funds-delay-seconds", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/_emulator/config").json()
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "emulator did not start"
                time.sleep(0.1)
        assert config["funds_delay_seconds"] == 5
        balance = httpx.get(
            f"http://127.0.0.1:{port}/v1/balance", headers={"Authorization": "Bearer sk_test_1"}
        )
        assert balance.json()["object"] == "balance"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
