"""Headless Debian Chromium driven by Selenium through Debian's chromedriver (never a downloaded browser or
driver), for the console's browser tests and `scripts/screenshot-console`."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800")
T = TypeVar("T")


def available() -> str | None:
    """None when the browser can run here, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[dev])"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} missing (Debian chromium / chromium-driver; scripts/bootstrap installs them)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, quit and removed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ivr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `probe` (a DOM query) until it returns something truthy; AssertionError after `timeout`."""
    end = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # a stale element while the page re-renders: look again
            last_error = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen within {timeout:.0f}s (last error: {last_error})")
