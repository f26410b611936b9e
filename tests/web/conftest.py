"""One headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) for every browser test of the
session, against the session's real stack. Each test starts signed out with empty storage; `page` is a small
person-shaped driver: open a path, click what a person clicks, type, read the text on the screen."""
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tools.stack import REPO

DIST = REPO / "web" / "dist" / "index.html"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
PHONE, DESKTOP = (375, 812), (1280, 900)


@pytest.fixture(scope="session")
def browser(stack):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not DIST.exists():
        pytest.fail("web/dist is missing: run `make install` (builds web/ with npm ci + vite build)")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium and chromium-driver are needed: `make install` installs them (apt-get)")
    profile = tempfile.mkdtemp(prefix="quanzi-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={PHONE[0]},{PHONE[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    def __init__(self, driver, base_url, shots, test_name):
        self.driver, self.base_url, self.shots, self.test_name = driver, base_url, shots, test_name
        # other tests' products name pictures on a made-up host (tests/flows.py): no internet here to fail on
        self.allowed_console = [r"^https://img\.example\.com/\S+ - Failed to load resource: net::ERR_NAME_NOT_RESOLVED$"]

    # -- moving around -------------------------------------------------------------------------------------
    def open(self, path):
        """Type the address and load it (a fresh page load, even when only the #route differs)."""
        if self.driver.current_url.split("#")[0] == (self.base_url + path).split("#")[0]:
            self.driver.get("about:blank")
        self.driver.get(self.base_url + path)
        return self

    def sign_in_as(self, user):
        """Someone already signed in on this phone (their token in storage): the steps before the scenario."""
        self.open("/")
        self.driver.execute_script("localStorage.setItem('quanzi.token', arguments[0])", user["token"])

    def sign_out(self):
        self.open("/")
        self.driver.execute_script("localStorage.clear(); sessionStorage.clear()")

    # -- what a person sees and does ------------------------------------------------------------------------
    def wait(self, condition, timeout=15, message=""):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: condition(), message)

    def text(self):
        return self.driver.find_element("tag name", "body").text

    def sees(self, *texts, timeout=15):
        try:
            self.wait(lambda: all(t in self.text() for t in texts), timeout)
        except Exception:
            raise AssertionError(f"expected {texts!r} on {self.driver.current_url}; the page says:\n{self.text()}")
        return self

    def sees_eventually(self, *texts, timeout=30):
        """For what arrives through events (commissions, formed groups): look again, as a person pulls to refresh."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.sees(*texts, timeout=3)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.driver.refresh()

    def does_not_see(self, text):
        assert text not in self.text(), f"{text!r} should not be on {self.driver.current_url}"

    def element(self, css, timeout=15):
        found = self.wait(lambda: [e for e in self.driver.find_elements("css selector", css) if e.is_displayed()],
                          timeout, f"nothing visible matches {css}")
        return found[0]

    def click(self, css=None, text=None, timeout=15):
        if text is not None:
            xpath = f"//*[normalize-space(text())={json.dumps(text, ensure_ascii=False)}]"
            target = self.wait(lambda: [e for e in self.driver.find_elements("xpath", xpath) if e.is_displayed()],
                               timeout, f"no visible {text!r}")[0]
        else:
            target = self.element(css, timeout)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
        self.wait(lambda: target.is_enabled(), timeout)
        try:
            target.click()
        except Exception:  # covered by a toast or the action bar: click it as the touch would
            self.driver.execute_script("arguments[0].click()", target)
        return self

    def type(self, css, value):
        from selenium.webdriver.common.keys import Keys
        field = self.element(f"{css} input, {css} textarea")
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.BACKSPACE)  # as a person empties it (the page hears every keystroke)
        field.send_keys(value)
        return self

    def field_error(self, css):
        return self.element(f"{css} .van-field__error-message").text

    # -- evidence -------------------------------------------------------------------------------------------
    def screenshot(self, name):
        """The screen at phone and desktop width, saved under the stack's folder (kept when a test fails)."""
        self.shots.mkdir(parents=True, exist_ok=True)
        for width, height in (DESKTOP, PHONE):
            self.driver.set_window_size(width, height)
            time.sleep(0.2)
            self.driver.save_screenshot(str(self.shots / f"{self.test_name}-{name}-{width}.png"))

    def console_errors(self):
        entries = self.driver.get_log("browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"
                and not any(re.search(p, e["message"]) for p in self.allowed_console)]


@pytest.fixture
def page(browser, stack, request):
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:60]
    person = Page(browser, stack.gateway_url, Path(stack.home) / "screenshots", name)
    browser.set_window_size(*PHONE)
    person.sign_out()
    browser.get_log("browser")  # what earlier tests left
    yield person
    errors = person.console_errors()
    assert not errors, f"console errors: {errors}"
