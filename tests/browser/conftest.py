"""A real browser for the pages people open: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver, against the Django live server of this run (pytest-django's ``live_server``,
which serves static files through the staticfiles finders, as WhiteNoise does under gunicorn).

Every page a test opens goes through ``Browser.visit``: it waits for what the page must show (in
the rendered DOM, not the HTML source), saves a screenshot under ``var/screenshots/`` whatever the
outcome, and fails when the page made a request to any host other than the server under test.
The browser also resolves no other host at all, so a page that needs the internet fails here the
way it fails on a machine without it, instead of passing where the internet happens to be."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from tests.orders.conftest import customer, make_customer, make_order, make_product  # noqa: F401

SCREENSHOT_DIR = Path(settings.VAR_DIR) / "screenshots"
WAIT_SECONDS = 20
# Schemes that never leave the browser.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}
STAFF_PASSWORD = "browser-test-password"


def _require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"{program} is not installed; the browser tests need Debian's {package} package "
            "(`make system`, scripts/install-system.sh, installs it)",
            pytrace=False,
        )
    return path


def _chromium_options(binary: str) -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root (CI containers)
        "--disable-dev-shm-usage",
        "--window-size=1366,1800",
        # Only the server under test resolves: a request to any other host fails at once.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        # The browser's own traffic (updates, sync, field trials) is not the page's.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(argument)
    # The DevTools performance log carries every Network.requestWillBeSent of the page.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return options


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = _require("chromium", "chromium")
    driver_path = _require("chromedriver", "chromium-driver")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=_chromium_options(binary))
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()


@dataclass
class Browser:
    driver: Any
    base_url: str
    test_name: str
    requests: list[str] = field(default_factory=list)

    def _drain_requests(self) -> list[str]:
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                urls.append(message["params"]["url"])
        self.requests.extend(urls)
        return urls

    def foreign_requests(self, urls: list[str]) -> list[str]:
        ours = urlsplit(self.base_url).netloc
        return [
            url for url in urls if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).netloc != ours
        ]

    def screenshot(self, name: str) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{self.test_name}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def visit(self, name: str, ready: Callable[[Any], object], path: str | None = None) -> None:
        """Opens ``path`` (or stays on the page a click led to), waits until ``ready`` holds,
        screenshots the page as ``name`` and checks its requests stayed on the server."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        if path is not None:
            self.driver.get(self.base_url + path)
        # After a click the condition may first find an element of the page being left, which
        # goes stale while it is read: that is "not yet", and the wait asks again.
        wait = WebDriverWait(self.driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,))
        try:
            wait.until(ready)
            failure = ""
        except TimeoutException:
            failure = f"page {name!r} did not show what it must within {WAIT_SECONDS}s"
        self.screenshot(name)
        foreign = self.foreign_requests(self._drain_requests())
        if foreign:
            failure += f"; page {name!r} requested other hosts than the server under test: {foreign}"
        if failure:
            pytest.fail(failure.lstrip("; "), pytrace=False)

    def text(self, css: str = "body") -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).click()


def shows(text: str, css: str = "body") -> Callable[[Any], bool]:
    """A wait condition: the rendered text of ``css`` contains ``text``."""
    from selenium.webdriver.common.by import By

    def check(driver: Any) -> bool:
        return any(text in element.text for element in driver.find_elements(By.CSS_SELECTOR, css))

    return check


@pytest.fixture
def browser(
    chromium: Any, live_server: Any, request: pytest.FixtureRequest, transactional_db: None
) -> Browser:
    chromium.delete_all_cookies()  # each test starts logged out, whatever the last one did
    chromium.get_log("performance")  # drop what earlier tests left in the log
    return Browser(driver=chromium, base_url=live_server.url, test_name=request.node.name)


@pytest.fixture
def staff(transactional_db: None) -> Any:
    return get_user_model().objects.create_superuser(
        username="browser-staff", email="browser-staff@example.com", password=STAFF_PASSWORD
    )


@pytest.fixture
def logged_in(browser: Browser, staff: Any) -> Browser:
    """The browser after logging in through Django admin's login form."""
    from selenium.webdriver.common.by import By

    browser.visit("admin-login", shows("Password"), "/admin/login/?next=/admin/")
    browser.driver.find_element(By.NAME, "username").send_keys(staff.username)
    browser.driver.find_element(By.NAME, "password").send_keys(STAFF_PASSWORD)
    browser.click("input[type=submit]")
    browser.visit("admin-index", shows("Site administration"))
    return browser
