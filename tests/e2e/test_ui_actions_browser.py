"""The page's reload and purge forms in a real browser (Debian's chromium).

pip installs a package through stockade; a developer finds no purge form; an
admin purges the package through the form, the page lists the file removed,
and pip's next install fetches it from the upstream again. The admin then
reloads the policy with a new deny entry through the page, and pip is refused.
Screenshots are saved under the test's temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stockade.proxy.app import load_engine
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.e2e.test_ui_browser import ADMIN, DEVELOPER, be, pip_install, shot, until
from tests.e2e.test_ui_browser import browser as browser  # a fixture, used by name
from tests.integration.ui_support import ui_app, ui_settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[ThreadedServer, FakePyPI, Path]]:
    index = FakePyPI()
    index.add_wheel("demo-lib", "1.0")
    upstream = ThreadedServer(index.app).start()
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {lists: {deny: []}}\n")
    settings = ui_settings(tmp_path, pypi_url=upstream.url("/simple/"),
                           policy={"file": str(policy), "reload_check_s": 0})
    proxy = ThreadedServer(lambda: ui_app(settings, load_engine)).start()
    try:
        yield proxy, index, policy
    finally:
        proxy.stop()
        upstream.stop()


def test_purge_and_reload_in_a_browser(
        browser: Any, stack: tuple[ThreadedServer, FakePyPI, Path],
        tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    proxy, index, policy = stack
    simple = proxy.url("/pypi/simple/")
    ui = proxy.url("/_stockade/ui/")
    wheel = index.projects["demo-lib"][0].filename
    first = pip_install(tmp_path, simple, "demo-lib")
    assert first.returncode == 0, first.stdout + first.stderr
    assert index.count(wheel) == 1

    be(browser, DEVELOPER)
    browser.get(ui + "actions")
    assert "needs an admin identity" in browser.find_element(By.ID, "error").text
    assert not browser.find_elements(By.ID, "purge-form")
    shot(browser, tmp_path, "01-actions-refused")

    be(browser, ADMIN)
    browser.get(ui + "actions")
    Select(browser.find_element(By.ID, "purge-ecosystem")).select_by_value("pypi")
    browser.find_element(By.ID, "purge-name").send_keys("demo-lib")
    browser.find_element(By.ID, "purge-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "purge-result")), "the purge result")
    result = browser.find_element(By.ID, "purge-result").text
    assert "Purged pypi demo-lib" in result and wheel in result
    shot(browser, tmp_path, "02-purged")
    again = pip_install(tmp_path, simple, "demo-lib==1.0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert index.count(wheel) == 2  # fetched from the upstream again

    policy.write_text("rules: {lists: {deny: [{ecosystem: pypi, name: demo-lib, "
                      "reason: pulled by platform}]}}\n")
    browser.get(ui + "actions")
    browser.find_element(By.ID, "reload-submit").click()
    until(lambda: bool(browser.find_elements(By.ID, "reload-result")), "the reload result")
    assert "Applied" in browser.find_element(By.ID, "reload-result").text
    shot(browser, tmp_path, "03-reloaded")
    refused = pip_install(tmp_path, simple, "demo-lib==1.0")
    assert refused.returncode != 0
    assert "pulled by platform" in refused.stdout + refused.stderr
    print("screenshots in", tmp_path / "screenshots")
