"""Headless Chromium under Selenium: the one way Colorflow opens a real browser.

Instagram's browser mode reads rendered hashtag pages with it, and `embedded.ui_check` looks at the
Airflow and MLflow UIs with it. Both need the same things from it: the Debian `chromium` and
`chromium-driver` packages (no driver download, the machines have no internet), flags that let Chromium
run as root in a container without a display, and a fresh profile per session so no cookie or cache
outlives it.

    with HeadlessChromium() as driver:
        driver.get("http://127.0.0.1:8080")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM_BINARY = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW_SIZE = (1280, 900)
PAGE_LOAD_TIMEOUT_S = 30.0
# Run as root in a container, with no display, GPU or shared-memory to speak of, and never phone home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class BrowserUnavailable(RuntimeError):
    """Chromium or its driver is missing or would not start: a machine problem, not a page problem."""


class HeadlessChromium:
    """A Chromium session with a throwaway profile that is removed afterwards; `with` gives the WebDriver.

    `user_agent` None keeps Chromium's own; a crawler passes the user agent robots.txt was checked for.
    `performance_log` records the DevTools network events (`driver.get_log("performance")`), so a caller can
    see the responses a page fetched and read their bodies with `Network.getResponseBody`.
    """

    def __init__(
        self,
        user_agent: str | None = None,
        window_size: tuple[int, int] = WINDOW_SIZE,
        binary: str = CHROMIUM_BINARY,
        driver_path: str = CHROMEDRIVER,
        page_load_timeout_s: float = PAGE_LOAD_TIMEOUT_S,
        performance_log: bool = False,
    ) -> None:
        self.user_agent, self.window_size = user_agent, window_size
        self.binary, self.driver_path = binary, driver_path
        self.page_load_timeout_s = page_load_timeout_s
        self.performance_log = performance_log

    def __enter__(self) -> WebDriver:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        # Selenium Manager would otherwise try to download drivers; the machines have no internet.
        os.environ.setdefault("SE_OFFLINE", "true")
        self.profile = tempfile.mkdtemp(prefix="colorflow-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = self.binary
        width, height = self.window_size
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        if self.user_agent:
            options.add_argument(f"--user-agent={self.user_agent}")
        if self.performance_log:
            options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
            options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        try:
            self.driver = webdriver.Chrome(service=Service(self.driver_path), options=options)
        except WebDriverException as error:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise BrowserUnavailable(
                f"cannot start headless Chromium ({self.binary}, {self.driver_path}): {error.msg}"
            ) from None
        self.driver.set_page_load_timeout(self.page_load_timeout_s)
        return self.driver

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
