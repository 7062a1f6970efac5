"""compose.yaml and the Dockerfile, checked without a Docker engine: every command
compose runs is one the CLI accepts, the release step gates the others, the image
runs as a non-root user with no dev dependencies (and no pgserver)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import _parser
from emulator.cli import build_parser as emulator_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COACHPAY = [name for name, svc in SERVICES.items() if svc.get("image") == "coachpay:latest"]


def _instructions(kind: str) -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(kind + " ")]


@pytest.mark.parametrize("name", COACHPAY)
def test_every_command_compose_runs_is_a_cli_command(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "coachpay"
    args, rest = _parser().parse_known_args(command[1:])  # SystemExit on an unknown command
    if args.command == "stripe-emulator":
        emulator_parser().parse_args(rest)  # the rest goes to the emulator's own CLI
    else:
        assert rest == [], rest


def test_the_services_run_what_the_deployment_needs() -> None:
    commands = {name: SERVICES[name]["command"][1:] for name in COACHPAY}
    assert commands["migrate"] == ["db", "upgrade"]
    assert commands["api"] == ["serve", "--no-jobs"]
    assert commands["worker"] == ["worker"]
    assert SERVICES["postgres"]["image"].startswith("postgres:")


def test_the_release_step_gates_the_api_and_the_worker() -> None:
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        gate = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert gate == "service_completed_successfully", name


def test_health_checks() -> None:
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert "/health/ready" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert "9100/metrics" in " ".join(SERVICES["worker"]["healthcheck"]["test"])


def test_the_worker_processes_the_webhooks_the_api_only_stores() -> None:
    env = SERVICES["api"]["environment"]
    assert env == SERVICES["worker"]["environment"]
    assert env["COACHPAY_WEBHOOK_PROCESSING"] == "off"
    assert env["COACHPAY_ENV"] == "production"
    assert env["COACHPAY_STRIPE_SECRET_KEY"] is None  # passed through only when set
    assert ":?" in env["COACHPAY_JWT_SECRET"]  # no default secret: compose refuses


def test_the_image_runs_as_a_non_root_user() -> None:
    users = _instructions("USER")
    assert users, "no USER instruction"
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert "USER " in final_stage
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_image_installs_from_the_lock_without_dev_dependencies() -> None:
    syncs = [r for r in _instructions("RUN") if "uv sync" in r]
    assert syncs
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run, run
        for forbidden in ("--all-extras", "--extra", "--dev", "--all-groups", "--group"):
            assert forbidden not in run.replace("--no-dev", ""), run
    assert "pgserver" not in DOCKERFILE.lower().replace("no pgserver", "")
    assert "pip install" not in " ".join(r for r in _instructions("RUN") if "uv==" not in r)


def test_pgserver_is_an_extra_not_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = project["project"]["dependencies"]
    assert not [d for d in runtime if d.startswith("pgserver")]
    assert any(
        d.startswith("pgserver") for d in project["project"]["optional-dependencies"]["embedded"]
    )
    assert "coachpay[embedded]" in project["dependency-groups"]["dev"]
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in runtime}
    assert {"msgspec", "structlog", "prometheus-client"} <= names


def test_the_dockerignore_keeps_local_state_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".venv", ".git", ".coachpay", ".pytest-pg", ".env"):
        assert path in ignored
    assert "README.md" not in ignored  # the package metadata reads it
