"""The CLI's surface: help on every option, --version, `payouts run` as a person and a
machine read it, `db stop`, and a clear error without the embedded PostgreSQL."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.cli import _parser, main
from api.jobs import cycle_json, cycle_summary
from core.embedded import embedded_running
from payouts.jobs import CycleResult, PayoutResult, ReleaseResult


def _walk(parser: argparse.ArgumentParser, path: str = "coachpay") -> list[tuple[str, str]]:
    """(where, what) of every option or subcommand without help text."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    missing.append((path, name))
                missing += _walk(sub, f"{path} {name}")
        elif not action.help:
            missing.append((path, "/".join(action.option_strings) or action.dest))
    return missing


def test_every_option_and_subcommand_has_help() -> None:
    assert _walk(_parser()) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"coachpay {version('coachpay')}"


def test_the_cycle_summary_is_short_and_human() -> None:
    result = CycleResult(
        release=ReleaseResult(released=7, cancelled=1),
        payouts=PayoutResult(created=3, outcomes=Counter(paid=2, waiting_funds=1), errors=1),
    )
    assert cycle_summary(result) == [
        "released 7 earnings (1 cancelled)",
        "3 payouts created: 2 paid, 1 waiting_funds",
        "1 errors (see the log)",
    ]
    assert json.loads(json.dumps(cycle_json(result)))["payouts"]["outcomes"] == {
        "paid": 2,
        "waiting_funds": 1,
    }


def test_payouts_run_prints_a_summary_or_json(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    commit_db_url: str,
    clean_engine: AsyncEngine,
) -> None:
    monkeypatch.setenv("COACHPAY_DATABASE_URL", commit_db_url)
    monkeypatch.setenv("COACHPAY_STRIPE_SECRET_KEY", "sk_test_cli")
    monkeypatch.setenv("COACHPAY_STRIPE_API_BASE", "http://127.0.0.1:1")  # never called
    assert main(["payouts", "run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("payouts run at ") and "simulated" not in out
    assert "released 0 earnings" in out and "CycleResult" not in out
    assert main(["payouts", "run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["simulated_clock"] is False
    assert doc["release"]["released"] == 0 and doc["payouts"]["created"] == 0


def test_no_database_url_and_no_pgserver_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.embedded

    monkeypatch.delenv("COACHPAY_DATABASE_URL", raising=False)
    monkeypatch.setattr(core.embedded, "embedded_available", lambda: False)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "COACHPAY_DATABASE_URL" in err and "embedded" in err and "Traceback" not in err


def test_db_stop_with_nothing_running(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COACHPAY_DATA_DIR", str(tmp_path))
    assert main(["db", "stop"]) == 0
    assert "was not running" in capsys.readouterr().out


ROOT = Path(__file__).resolve().parents[2]


def _coachpay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("COACHPAY_") and k != "VIRTUAL_ENV"
    }
    env.update(COACHPAY_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=tmp_path,  # no .env of the repo
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(180)
def test_a_fresh_embedded_database_starts_quietly_and_db_stop_stops_it(tmp_path: Path) -> None:
    pytest.importorskip("pgserver")
    data = tmp_path / "data"
    try:
        first = _coachpay(tmp_path, "db", "upgrade")
        assert first.returncode == 0, first.stderr
        assert embedded_running(data)  # it outlives the command, by design
    finally:
        stop = _coachpay(tmp_path, "db", "stop")
    out = first.stdout + first.stderr
    for noise in ("initdb", "setup plugin", "Running upgrade", "PostmasterInfo", "Warning"):
        assert noise not in out, out
    assert "database migrated from an empty schema to" in first.stdout
    assert len(out.strip().splitlines()) <= 4, out
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stdout + stop.stderr
    assert not embedded_running(data)
