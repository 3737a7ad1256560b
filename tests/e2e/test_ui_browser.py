"""The web page in a real browser: Debian's chromium driven through its chromedriver.

pip, as a process, is refused a typosquat and meets a typosquat hold (a young
look-alike) through stockade running its real policy; the refusals page lists
both; the explain form explains one; a developer cannot approve the hold, an
admin can (into the approvals file the policy names, which the server then
reads), and pip then installs it. A form posted from another site with the
admin's credentials and a valid token is refused.

Selenium with chromium-driver rather than Playwright: Debian builds the driver
from the same source as the browser, so they always match, while Playwright
pins the browser revision its own download would bring (not reachable here).
Screenshots are saved under the test's temporary folder.

Callers are named by ``X-Test-Identity`` (``ui_support``), sent by the browser
through the DevTools protocol, until authentication sets the identity.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stockade.policy import approvals
from stockade.proxy.app import load_engine
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.integration.ui_support import ui_app, ui_settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ADMIN = "alice,platform,admin"
DEVELOPER = "bob,payments"
HELD = "flask-cors-2"  # resembles flask-cors; its one release is two days old: held


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(.ci/setup-browser.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1400,1000", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    driver.execute_cdp_cmd("Network.enable", {})
    try:
        yield driver
    finally:
        driver.quit()


def be(driver: Any, identity: str) -> None:
    """Every later request of the browser says it comes from ``identity``."""
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                           {"headers": {"X-Test-Identity": identity}})


def shot(driver: Any, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(folder / f"{name}.png"))


def until(condition: Callable[[], bool], what: str, *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def pip_install(tmp_path: Path, index: str, req: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir",
         "--disable-pip-version-check", "--target", str(tmp_path / f"target-{req}"),
         "--index-url", index, req],
        capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[ThreadedServer, ThreadedServer, Path]]:
    index = FakePyPI()
    index.add_wheel("reqeusts", "1.0")
    young = (datetime.now(UTC) - timedelta(days=2, hours=1)).isoformat()
    index.add_wheel(HELD, "1.0", upload_time=young)
    upstream = ThreadedServer(index.app).start()
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    path = tmp_path / "approvals.yaml"  # the file the policy names
    settings = ui_settings(tmp_path, pypi_url=upstream.url("/simple/"),
                           policy={"file": str(policy), "reload_check_s": 0})
    proxy = ThreadedServer(lambda: ui_app(settings, load_engine)).start()
    try:
        yield proxy, upstream, path
    finally:
        proxy.stop()
        upstream.stop()


def test_refusals_explain_and_approve_in_a_browser(
        browser: Any, stack: tuple[ThreadedServer, ThreadedServer, Path],
        tmp_path: Path) -> None:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    proxy, _, path = stack
    simple = proxy.url("/pypi/simple/")
    ui = proxy.url("/_stockade/ui/")
    for name, reason in (("reqeusts", 'looks like a typosquat of "requests"'),
                         (HELD, 'resembles "flask-cors" and is new')):
        refused = pip_install(tmp_path, simple, name)
        assert refused.returncode != 0
        assert "Blocked by stockade" in refused.stdout + refused.stderr
        assert reason in refused.stdout + refused.stderr

    # The refusals a developer's pip met are listed.
    be(browser, DEVELOPER)

    def listed() -> bool:
        browser.get(ui + "refusals")
        text = browser.find_element(By.ID, "refusals").text
        return "reqeusts" in text and HELD in text

    until(listed, "both refusals in the list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#refusals tr.refusal")
    assert any("typosquat" in r.text and "looks like a typosquat" in r.text for r in rows)
    assert any(HELD in r.text and "hold" in r.text for r in rows)
    assert browser.find_element(By.ID, "who").text.startswith("bob")
    shot(browser, tmp_path, "01-refusals")
    Select(browser.find_element(By.NAME, "ecosystem")).select_by_value("pypi")
    Select(browser.find_element(By.NAME, "decision")).select_by_value("hold")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()

    def filtered() -> bool:
        if "decision=hold" not in browser.current_url:
            return False
        try:
            text = browser.find_element(By.ID, "refusals").text
        except (NoSuchElementException, StaleElementReferenceException):
            return False  # the filtered page is still loading
        return HELD in text and "reqeusts" not in text

    until(filtered, "the list filtered to holds")

    # Explain a name through the form.
    browser.get(ui + "explain")
    Select(browser.find_element(By.ID, "explain-ecosystem")).select_by_value("pypi")
    browser.find_element(By.ID, "explain-name").send_keys("reqeusts")
    browser.find_element(By.ID, "explain-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "decision")), "the explanation")
    assert browser.find_element(By.ID, "decision").text == "block"
    assert "looks like a typosquat" in browser.find_element(By.ID, "decision-reason").text
    assert "typosquat" in browser.find_element(By.ID, "verdicts").text
    assert "upstream" in browser.find_element(By.ID, "facts").text
    shot(browser, tmp_path, "02-explain")

    # A developer gets no form; a developer sending an admin's form is refused.
    browser.get(ui + f"approve?ecosystem=pypi&name={HELD}")
    assert "needs an admin identity" in browser.find_element(By.ID, "error").text
    assert not browser.find_elements(By.ID, "approve-form")
    shot(browser, tmp_path, "03-approve-refused")
    be(browser, ADMIN)
    browser.get(ui + f"approve?ecosystem=pypi&name={HELD}")
    browser.find_element(By.ID, "approve-reason").send_keys("reviewed by platform")
    stolen = browser.find_element(By.NAME, "csrf").get_attribute("value")
    be(browser, DEVELOPER)
    browser.find_element(By.ID, "approve-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "refused")), "the refusal")
    assert "needs an admin identity" in browser.find_element(By.ID, "refused").text
    assert approvals.load(path) == []

    # Another site posting the admin's form, token and all, is refused.
    evil = ThreadedServer(lambda: evil_app(proxy.url("/_stockade/ui/approve"), stolen)).start()
    try:
        be(browser, ADMIN)
        browser.get(f"http://localhost:{evil.port}/")
        browser.find_element(By.ID, "go").click()
        until(lambda: bool(browser.find_elements(By.ID, "refused")), "the refusal")
        assert "another site" in browser.find_element(By.ID, "refused").text
        assert approvals.load(path) == []
    finally:
        evil.stop()

    # The admin approves the hold from the refusals list; pip then installs it.
    browser.get(ui)
    before = browser.find_element(By.ID, "revision").text
    browser.get(ui + f"refusals?name={HELD}")
    browser.find_element(By.LINK_TEXT, "approve").click()
    until(lambda: bool(browser.find_elements(By.ID, "approve-form")), "the approve form")
    assert browser.find_element(By.ID, "approve-name").get_attribute("value") == HELD
    assert str(path) in browser.find_element(By.ID, "approvals-file").text
    browser.find_element(By.ID, "approve-reason").send_keys("reviewed by platform")
    shot(browser, tmp_path, "04-approve-form")
    browser.find_element(By.ID, "approve-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "done")), "the approval")
    assert "reviewed by platform" in browser.find_element(By.ID, "approvals").text
    shot(browser, tmp_path, "05-approved")
    (entry,) = approvals.load(path)
    assert (entry.name, entry.by, entry.reason) == (HELD, "alice", "reviewed by platform")
    installed = pip_install(tmp_path, simple, HELD)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    browser.get(ui)
    assert browser.find_element(By.ID, "revision").text != before  # the approval is in it
    assert "applied" in browser.find_element(By.ID, "last-reload").text
    shot(browser, tmp_path, "06-overview")
    print("screenshots in", tmp_path / "screenshots")


def evil_app(target: str, token: str) -> Any:
    from aiohttp import web

    page = f"""<!doctype html><form method="post" action="{target}">
<input type="hidden" name="csrf" value="{token}">
<input type="hidden" name="ecosystem" value="pypi">
<input type="hidden" name="name" value="{HELD}">
<input type="hidden" name="until" value="300d">
<input type="hidden" name="reason" value="free stuff">
<button id="go" type="submit">Win a prize</button></form>"""

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    return app
