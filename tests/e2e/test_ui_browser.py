"""The web page in a real browser: Debian's chromium driven through its chromedriver.

pip, as a process, is refused a typosquat and a held package through stockade;
the refusals page lists both; the explain form explains one; a developer cannot
approve the hold, an admin can, and pip then installs it. A form posted from
another site with the admin's credentials and a valid token is refused.

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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stockade.policy.model import ALLOWED, Decision, Facts, PackageRef, Verdict
from stockade.policy.names import normalize
from stockade.proxy.ui import approvals
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.integration.ui_support import ui_app, ui_settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ADMIN = "alice,platform,admin"
DEVELOPER = "bob,payments"


class HoldingEngine:
    """Refuses ``reqeusts`` (a typosquat) and holds every version of ``young-pkg``
    (cooldown) unless an approval in force names it: as the holds policy will."""

    def __init__(self, approved: set[str]) -> None:
        self.approved = approved
        self.revision = "test-" + ",".join(sorted(approved))

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        name = normalize(ref.ecosystem, ref.name)
        if name == "reqeusts":
            return Verdict(Decision.BLOCK, "typosquat", "reqeusts imitates requests",
                           target="requests")
        if name == "young-pkg" and ref.version is not None and name not in self.approved:
            return Verdict(Decision.BLOCK, "age",
                           f"{ref.display()} is held: younger than the 7-day cooldown")
        return ALLOWED

    def explain(self, ref: PackageRef, facts: Facts) -> list[Verdict]:
        return [self.decide(ref, facts)]

    def filter_versions(self, name: PackageRef,
                        versions: Mapping[str, Facts]) -> dict[str, Verdict]:
        return {v: self.decide(PackageRef(name.ecosystem, name.name, v), f)
                for v, f in versions.items()}


def engine_factory(path: Path) -> Callable[[Any], HoldingEngine]:
    def build(_settings: Any) -> HoldingEngine:
        return HoldingEngine({a.name for a in approvals.load(path)})
    return build


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
    index.add_wheel("young-pkg", "1.0")
    upstream = ThreadedServer(index.app).start()
    path = tmp_path / "approvals.json"
    settings = ui_settings(tmp_path, pypi_url=upstream.url("/simple/"),
                           ui={"approvals_file": str(path)},
                           policy={"reload_check_s": 0})
    proxy = ThreadedServer(lambda: ui_app(settings, engine_factory(path))).start()
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
    for name, reason in (("reqeusts", "reqeusts imitates requests"),
                         ("young-pkg", "cooldown")):
        refused = pip_install(tmp_path, simple, name)
        assert refused.returncode != 0
        assert "Blocked by stockade" in refused.stdout + refused.stderr
        assert reason in refused.stdout + refused.stderr

    # The refusals a developer's pip met are listed.
    be(browser, DEVELOPER)

    def listed() -> bool:
        browser.get(ui + "refusals")
        text = browser.find_element(By.ID, "refusals").text
        return "reqeusts" in text and "young-pkg" in text

    until(listed, "both refusals in the list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#refusals tr.refusal")
    assert any("typosquat" in r.text and "imitates requests" in r.text for r in rows)
    assert browser.find_element(By.ID, "who").text.startswith("bob")
    shot(browser, tmp_path, "01-refusals")
    Select(browser.find_element(By.NAME, "ecosystem")).select_by_value("pypi")
    browser.find_element(By.NAME, "rule").send_keys("age")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()

    def filtered() -> bool:
        if "rule=age" not in browser.current_url:
            return False
        try:
            text = browser.find_element(By.ID, "refusals").text
        except (NoSuchElementException, StaleElementReferenceException):
            return False  # the filtered page is still loading
        return "young-pkg" in text and "reqeusts" not in text

    until(filtered, "the list filtered by rule")

    # Explain a name through the form.
    browser.get(ui + "explain")
    Select(browser.find_element(By.ID, "explain-ecosystem")).select_by_value("pypi")
    browser.find_element(By.ID, "explain-name").send_keys("reqeusts")
    browser.find_element(By.ID, "explain-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "decision")), "the explanation")
    assert browser.find_element(By.ID, "decision").text == "block"
    assert "imitates requests" in browser.find_element(By.ID, "decision-reason").text
    assert "typosquat" in browser.find_element(By.ID, "verdicts").text
    assert "upstream" in browser.find_element(By.ID, "facts").text
    shot(browser, tmp_path, "02-explain")

    # A developer gets no form; a developer sending an admin's form is refused.
    browser.get(ui + "approve?ecosystem=pypi&name=young-pkg")
    assert "needs an admin identity" in browser.find_element(By.ID, "error").text
    assert not browser.find_elements(By.ID, "approve-form")
    shot(browser, tmp_path, "03-approve-refused")
    be(browser, ADMIN)
    browser.get(ui + "approve?ecosystem=pypi&name=young-pkg")
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
    browser.get(ui + "refusals?name=young-pkg")
    browser.find_element(By.LINK_TEXT, "approve").click()
    until(lambda: bool(browser.find_elements(By.ID, "approve-form")), "the approve form")
    assert browser.find_element(By.ID, "approve-name").get_attribute("value") == "young-pkg"
    browser.find_element(By.ID, "approve-reason").send_keys("reviewed by platform")
    shot(browser, tmp_path, "04-approve-form")
    browser.find_element(By.ID, "approve-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "done")), "the approval")
    assert "reviewed by platform" in browser.find_element(By.ID, "approvals").text
    shot(browser, tmp_path, "05-approved")
    (entry,) = approvals.load(path)
    assert (entry.name, entry.by) == ("young-pkg", "alice")
    installed = pip_install(tmp_path, simple, "young-pkg")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    browser.get(ui)
    assert "test-young-pkg" in browser.find_element(By.ID, "revision").text
    assert "applied" in browser.find_element(By.ID, "last-reload").text
    shot(browser, tmp_path, "06-overview")
    print("screenshots in", tmp_path / "screenshots")


def evil_app(target: str, token: str) -> Any:
    from aiohttp import web

    page = f"""<!doctype html><form method="post" action="{target}">
<input type="hidden" name="csrf" value="{token}">
<input type="hidden" name="ecosystem" value="pypi">
<input type="hidden" name="name" value="young-pkg">
<input type="hidden" name="until" value="300d">
<input type="hidden" name="reason" value="free stuff">
<button id="go" type="submit">Win a prize</button></form>"""

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    return app
