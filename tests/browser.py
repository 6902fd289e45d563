"""A real headless browser for tests: Debian's system chromium driven by Playwright's sync API
(nothing here downloads a browser); without one, the tests that ask for it skip and say why."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Page, sync_playwright

# Where Debian's package puts it, then whatever PATH offers.
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
MISSING = (
    "no system chromium (looked for /usr/bin/chromium and chromium on PATH): "
    "apt-get install chromium, or run ./run tests as root to have it installed"
)


def system_chromium() -> str | None:
    """The path of the system's chromium, or None."""
    for path in (*CHROMIUM_PATHS, shutil.which("chromium"), shutil.which("chromium-browser")):
        if path and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per test module (each test opens its own context in it)."""
    path = system_chromium()
    if path is None:
        print(f"browser tests skipped: {MISSING}")
        pytest.skip(MISSING)
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Error as exc:
            reason = f"{path} does not start: {str(exc).strip().splitlines()[0]}"
            print(f"browser tests skipped: {reason}")
            pytest.skip(reason)
        yield launched
        launched.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``test-artifacts/<name>.png`` at the repository's root."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
