"""Driving Debian's Chromium with Playwright (no browser download): shared by the browser test and
docs/serve_screenshot.py."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

CHROMIUM_ENV = "INPAINTSEG_CHROMIUM"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The system Chromium: $INPAINTSEG_CHROMIUM, /usr/bin/chromium, or chromium / chromium-browser on PATH."""
    for candidate in (os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_reason() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ModuleNotFoundError:
        return "the playwright package is not installed (pip install -e '.[dev]'; no browser download is needed)"
    if chromium_path() is None:
        return (f"no system Chromium (looked at ${CHROMIUM_ENV}, /usr/bin/chromium and PATH); install it with "
                "`apt-get install -y chromium` (.ci/run does this in CI)")
    return None


def launch(playwright):
    """A headless Chromium from the system, never a downloaded one."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)


def upload(page, url: str, image: Path, timeout_ms: float = 120_000) -> None:
    """Open the page, choose `image` in its file input and wait until the score is shown."""
    open_page(page, url)
    page.set_input_files("#file", str(image))
    # Locator waits poll without eval(), which the page's Content-Security-Policy forbids.
    page.locator("#result").wait_for(state="visible", timeout=timeout_ms)
    page.locator("#score").filter(has_text=re.compile(r"^\d")).wait_for(timeout=timeout_ms)


def open_page(page, url: str) -> None:
    """Open the page and wait until it has loaded the model description."""
    page.goto(url)
    page.locator("#status").filter(has_text=re.compile("^Ready")).wait_for()
