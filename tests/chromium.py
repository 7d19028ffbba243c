"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver: the browser the
browser tests share. Without the packages `chromium` and `chromium-driver` the tests fail, they do
not skip, so CI cannot pass while silently not running them."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from harness import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = ARTIFACTS / "browser"
WAIT = 20.0

# Headless as root on a closed network: without the background/update/sync flags Chromium keeps
# dialling out and floods the log with refused connections; QUIC off keeps it on plain TCP.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]


@contextmanager
def chromium(extra_flags: list[str] | None = None, log_name: str = "chromedriver.log"):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install the Debian packages "
            "`chromium` and `chromium-driver` (apt-get install chromium chromium-driver)"
        )
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="dcgw-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + list(extra_flags or []) + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager (which would try to download one) out of it.
    service = Service(str(CHROMEDRIVER), log_output=str(SHOTS / log_name))
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        if driver is not None:
            driver.quit()  # also stops this chromedriver
        else:
            service.stop()
        shutil.rmtree(profile, ignore_errors=True)
