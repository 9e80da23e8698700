"""Headless Chromium for the slide and site tests: Debian's /usr/bin/chromium driven by Playwright (which
never downloads a browser here). `make test` installs both, and Marp (npm ci); a test that misses one fails
saying what to install, it is not skipped."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
MARP = REPO / "node_modules" / ".bin" / "marp"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--no-first-run",
]  # fmt: skip


def require_browser_tools(need_marp: bool = False) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("Playwright is missing: `make setup` installs it (uv sync --all-extras)")
    if need_marp and not MARP.is_file():
        pytest.fail(f"Marp CLI is missing ({MARP}): `make test` installs it (npm ci)")


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 720):
    """One page of a fresh headless Chromium, closed afterwards (`page.context.new_page()` opens another
    tab that shares its storage)."""
    from playwright.sync_api import sync_playwright

    require_browser_tools()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_context(viewport={"width": width, "height": height}).new_page()
        finally:
            browser.close()
