"""``coachpay check-config``, and every product command refusing a production setup that
still runs on a built-in secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api import cli
from api.cli import main

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "COACHPAY_JWT_SECRET": "p" * 40,
    "COACHPAY_STRIPE_WEBHOOK_SECRET": "whsec_real_platform_0123456789",
    "COACHPAY_STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_real_connect_0123456789",
    "COACHPAY_STRIPE_SECRET_KEY": "sk_live_0123456789",
    "COACHPAY_DATABASE_URL": "postgresql://127.0.0.1:1/none",
    "COACHPAY_PUBLIC_URL": "https://pay.example.com",
}


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COACHPAY_")}
    return {**env, **values}


def _check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "check-config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_check_config_lists_every_problem_and_fails() -> None:
    out = _check_config(_env())
    assert out.returncode == 1, out
    lines = out.stdout.strip().splitlines()
    names = [line.split(":", 1)[0] for line in lines]
    assert names == [
        "COACHPAY_JWT_SECRET",
        "COACHPAY_STRIPE_WEBHOOK_SECRET",
        "COACHPAY_STRIPE_CONNECT_WEBHOOK_SECRET",
        "COACHPAY_STRIPE_SECRET_KEY",
        "COACHPAY_DATABASE_URL",
        "COACHPAY_PUBLIC_URL",
    ], lines


def test_check_config_ok() -> None:
    out = _check_config(_env(**PRODUCTION))
    assert out.returncode == 0, out
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "argv", [["serve"], ["worker"], ["payouts", "run"], ["demo"], ["token", "--sub", "x",
                                                                  "--role", "admin"]]
)  # fmt: skip
@pytest.mark.parametrize(
    "trigger",
    [
        {"COACHPAY_STRIPE_SECRET_KEY": "sk_live_0123456789"},
        {"COACHPAY_PUBLIC_URL": "https://pay.example.com"},
        {"COACHPAY_ENV": "production"},
    ],
)
def test_product_commands_refuse_development_secrets_in_production(
    argv: list[str],
    trigger: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in [k for k in os.environ if k.startswith("COACHPAY_")]:
        monkeypatch.delenv(key)
    for key, value in trigger.items():
        monkeypatch.setenv(key, value)
    started: list[str] = []
    for name in cli._COMMANDS:  # a command that got through would only note it
        monkeypatch.setitem(cli._COMMANDS, name, lambda *_, n=name: started.append(n) or 0)
    # Refused before anything starts (no database, no emulator, no server).
    assert main(argv) == 2
    assert started == []
    err = capsys.readouterr().err
    assert "COACHPAY_JWT_SECRET" in err and "check-config" in err, err
