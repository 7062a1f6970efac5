"""Browser tests: headless Chromium (Debian's ``chromium``) driven by Playwright over the demo.

Skipped cleanly when Playwright or a Chromium binary is missing (install:
``apt-get install -y chromium``; or point ``COACHPAY_CHROMIUM`` at a binary).
Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.demo import Demo, running_demo
from api.runtime import Runtime
from core.db import create_engine
from core.settings import load_settings
from tests.conftest import truncate_all
from tests.dbutil import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def chromium_path() -> str | None:
    wanted = os.environ.get("COACHPAY_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium binary (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
async def demo(chromium: str, commit_db_url: str) -> AsyncIterator[Demo]:
    """``coachpay demo`` on the committing test database and an emulator on a free port."""
    engine = create_engine(commit_db_url, pool_size=2)
    await truncate_all(engine)
    await engine.dispose()
    settings = load_settings(
        database_url=commit_db_url,
        stripe_secret_key=None,
        stripe_api_base=None,
        host="127.0.0.1",
        run_jobs=False,
        db_pool_size=5,
    )
    runtime = Runtime(settings, emulator_port=0)
    await runtime.start()
    try:
        async with running_demo(runtime, port=0) as d:
            yield d
    finally:
        await runtime.stop()


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield b
        finally:
            await b.close()


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
