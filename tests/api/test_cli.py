"""The ``coachpay`` CLI: token, bad settings, and ``serve`` with no configuration at all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from api.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_token_prints_only_a_valid_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COACHPAY_JWT_SECRET", "cli-secret-0123456789-0123456789-abc")
    assert main(["token", "--sub", "coach-1", "--role", "coach", "--ttl-minutes", "5"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out
    claims = jwt.decode(out, "cli-secret-0123456789-0123456789-abc", algorithms=["HS256"])
    assert claims["sub"] == "coach-1" and claims["role"] == "coach"
    assert 0 < claims["exp"] - time.time() <= 5 * 60 + 5


def test_token_rejects_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["token", "--sub", "x", "--role", "root"])
    assert exc.value.code == 2


def test_bad_setting_exits_2_with_clear_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COACHPAY_HOLD_HOURS", "-3")
    assert main(["token", "--sub", "x", "--role", "admin"]) == 2
    err = capsys.readouterr().err
    assert "COACHPAY_HOLD_HOURS" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_serve_with_no_configuration_starts_everything(tmp_path: Path) -> None:
    """Embedded PostgreSQL + emulator + migrations from nothing; /health answers 200."""
    pytest.importorskip("pgserver")
    port, emulator_port = _free_port(), _free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("COACHPAY_") and k != "VIRTUAL_ENV"
    }
    env.update(
        COACHPAY_DATA_DIR=str(tmp_path / "data"),
        COACHPAY_EMULATOR_PORT=str(emulator_port),
        COACHPAY_RUN_JOBS="false",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=tmp_path,  # no .env of the repo
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                if resp.status_code == 200:
                    body = resp.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert body == {"status": "ok", "database": "ok", "stripe": "ok"}
        emu = httpx.get(
            f"http://127.0.0.1:{emulator_port}/v1/balance",
            timeout=5,
            headers={"Authorization": "Bearer sk_test_x"},
        )
        assert emu.status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        _stop_embedded(tmp_path / "data" / "pg")


def _stop_embedded(pgdata: Path) -> None:
    # The embedded server outlives coachpay by design (shared by commands);
    # a test must not leave one behind.
    if (pgdata / "postmaster.pid").exists():
        import pgserver

        pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
