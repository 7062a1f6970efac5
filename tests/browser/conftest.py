"""Browser tests: headless Chromium (Debian's ``chromium``) driven by Playwright over the demo.

Skipped cleanly when Playwright or a Chromium binary is missing (install:
``apt-get install -y chromium``; or point ``COACHPAY_CHROMIUM`` at a binary).
Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    # The port is chosen here so that the URLs Stripe sends browsers back to (Checkout's
    # success and cancel URLs, onboarding's return URL) point at this app.
    port = free_port()
    settings = load_settings(
        database_url=commit_db_url,
        stripe_secret_key=None,
        stripe_api_base=None,
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        run_jobs=False,
        db_pool_size=5,
        webhook_allowed_networks="127.0.0.1/32",  # the demo's fulfilment receiver
    )
    runtime = Runtime(settings, emulator_port=0)
    await runtime.start()
    try:
        async with running_demo(runtime, port=port) as d:
            assert d.app_url == settings.public_url, "the chosen port was taken meanwhile"
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


# Elements whose content is wider than they are (a table cut by its scroll box, a cell
# cut by its column), and the page itself wider than the window.
CLIPPED_JS = """() => {
  const out = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) { out.push('page ' + root.scrollWidth); }
  for (const el of document.querySelectorAll('.scroll, table th, table td')) {
    if (el.scrollWidth > el.clientWidth) {
      const where = (el.closest('section') || {}).id || '?';
      out.push(where + ' ' + el.tagName + ' ' + el.scrollWidth + '>' + el.clientWidth
               + ' ' + el.textContent.trim().slice(0, 40));
    }
  }
  return out;
}"""


async def new_page(browser: Any, **kw: Any) -> Any:
    """A 1280 px wide page, in New York time and British English (24 h clock), so the
    local times the page script shows differ from the UTC ones the server writes."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900},
        locale="en-GB",
        timezone_id="America/New_York",
        **kw,
    )
    return await context.new_page()


async def sign_in(browser: Any, demo: Demo, sub: str, path: str) -> Any:
    """Ask for ``path`` signed out (the sign-in form), sign in as ``sub``, land on it."""
    page = await new_page(browser)
    await page.goto(f"{demo.app_url}{path}")
    assert page.url.startswith(f"{demo.app_url}/?next="), page.url
    await page.fill("#token", demo.tokens[sub])
    await page.click("#signin-submit")
    await page.wait_for_url(f"{demo.app_url}{path}*")
    await page.wait_for_selector("html[data-ready]")
    return page


async def text_of(page: Any, testid: str) -> str:
    return str(await page.inner_text(f'[data-testid="{testid}"]')).strip()


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(screenshot_path(name)), full_page=True)


async def clipped(page: Any) -> list[str]:
    found: list[str] = await page.evaluate(CLIPPED_JS)
    return found
