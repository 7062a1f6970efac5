"""The ``coachpay`` CLI: token, bad settings, and ``serve`` with no configuration at all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import psycopg
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


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def _stop_embedded(pgdata: Path) -> None:
    # The embedded server outlives coachpay by design (shared by commands);
    # a test must not leave one behind. pgserver's own cleanup() does not stop
    # it while the (terminated) coachpay process is still in its handle list,
    # so the postmaster is asked directly for a fast shutdown.
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({}, ["--no-jobs"], "COACHPAY_DATABASE_URL"),
        ({"COACHPAY_DATABASE_URL": "postgresql://db/x"}, ["--no-jobs"], "STRIPE_API_BASE"),
        (
            {"COACHPAY_DATABASE_URL": "postgresql://db/x", "COACHPAY_STRIPE_API_BASE": "http://s"},
            [],
            "--no-jobs",
        ),
    ],
    ids=["embedded-db", "built-in-emulator", "jobs"],
)
def test_serve_workers_refused_with_per_process_parts(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: list[str],
    expected: str,
) -> None:
    for key in ("COACHPAY_DATABASE_URL", "COACHPAY_STRIPE_API_BASE", "COACHPAY_STRIPE_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COACHPAY_RUN_JOBS", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", "--workers", "2", *args]) == 2
    err = capsys.readouterr().err
    assert "--workers 2" in err and expected in err


@pytest.mark.timeout(120)
def test_serve_workers_receive_webhooks_in_several_processes(
    commit_db_url: str, clean_engine: object
) -> None:
    """Two uvicorn workers over the test database, processing off: both answer, events stored."""
    from core.stripe_webhooks import sign_payload

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COACHPAY_")}
    env.update(
        COACHPAY_DATABASE_URL=commit_db_url,
        COACHPAY_STRIPE_API_BASE="http://127.0.0.1:9",  # never called: processing is off
        COACHPAY_STRIPE_WEBHOOK_SECRET="whsec_cli_workers",
        COACHPAY_WEBHOOK_PROCESSING="off",
        COACHPAY_DB_POOL_SIZE="2",
        PYTHONPATH=str(ROOT),
    )
    cmd = [sys.executable, "-m", "api.cli", "serve", "--workers", "2", "--no-jobs"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        answers = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(answers) < 20 and proc.poll() is None:
            body = json.dumps(
                {"id": f"evt_w{len(answers)}", "object": "event", "type": "test.w",
                 "created": int(time.time()), "livemode": False, "data": {"object": {"id": "x"}}}
            ).encode()  # fmt: skip
            headers = {"Stripe-Signature": sign_payload(body, "whsec_cli_workers")}
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/v1/webhooks/stripe",
                    content=body,
                    headers=headers,
                    timeout=5,
                )
                answers.append(r.status_code)
            except httpx.HTTPError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert answers == [200] * 20
        assert len(_children(proc.pid)) >= 2  # the workers
        with psycopg.connect(commit_db_url) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM webhook_events"
            ).fetchone()
        assert row == (20, 20)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_tune_gc_freezes_the_start_up_heap_and_raises_the_thresholds() -> None:
    import gc

    from api.cli import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 10_000  # the imported modules' objects at least
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
