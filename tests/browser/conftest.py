"""Fixtures for the browser tests: the real app on a loopback port, and Debian's Chromium under Playwright.

Playwright never downloads a browser here: it drives /usr/bin/chromium, which `make test` installs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import make_server

from controlplane import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
# A step that waits longer than this is broken, not slow: fail fast and keep the suite quick.
STEP_TIMEOUT_MS = 5_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} is missing): run `make install-test-system` "
            "(apt-get install chromium). The browser tests drive Debian's Chromium, never a downloaded one.",
            pytrace=False,
        )
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        pytest.fail(
            f"Playwright for Python is not installed ({error}): run "
            "`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install -e '.[test]'`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as error:
            pytest.fail(f"Chromium at {CHROMIUM} did not start under Playwright: {error}", pytrace=False)
        yield browser
        browser.close()


@pytest.fixture
def live_server(settings, installation) -> Iterator[str]:
    """The real app, CSRF on, served by werkzeug on a free loopback port; yields its base URL."""
    app = create_app({"LETTERHEAD_SETTINGS": settings, "TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        app.extensions["letterhead"].dispose()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    """A fresh browser context (no cookies) on the live server; relative URLs go to it."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots are kept for a person to look at (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
