"""Real npm and pip through ``stockade serve``: a young look-alike is held with its
reason in the client's output, approved with ``stockade approve``, then installed;
an old look-alike with many releases is installed and recorded.

The upstreams are the fake registries of ``testbed`` (they speak the registries'
protocols) serving packages the test builds, with publish dates the test sets.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stockade.config.load import load_settings
from stockade.proxy.app import decision_log_path
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.npm_registry import npm_env, run, tool
from tests.e2e.conftest import stockade_command
from tests.e2e.test_pypi_clients import pip_install

# Real npm and pip processes on a loaded two-core machine: the bound stops a hang.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days, hours=1)).isoformat() \
        .replace("+00:00", "Z")


@pytest.fixture
def upstreams() -> Iterator[tuple[str, ThreadedServer]]:
    npm = FakeNpm()
    npm.publish("axios-2", "1.0.0", time=_ago(2))  # young, one release: held
    npm.created["axios-2"] = _ago(2)
    npm.created["axios-3"] = _ago(800)  # old, six releases: allowed and recorded
    for i in range(6):
        npm.publish("axios-3", f"1.{i}.0", time=_ago(800 - 10 * i))
    pypi = FakePyPI()
    pypi.add_wheel("rich-click-3", "1.0", upload_time=_ago(2))
    for i in range(6):
        pypi.add_wheel("flask-cors-2", f"1.{i}", upload_time=_ago(900 - 10 * i))
    # the fake npm registry writes its own URL into packuments: it runs as its own
    # loopback server, on the loop of a thread that outlives the test's calls
    loop = ThreadedServer(web.Application).start()
    loop.call(npm.start())
    pypi_server = ThreadedServer(pypi.app).start()
    yield npm.url, pypi_server
    loop.call(npm.stop())
    loop.stop()
    pypi_server.stop()


def _npm_install(tmp_path: Path, name: str, dependency: str, registry: str) -> Any:
    work = tmp_path / name
    work.mkdir()
    (work / "package.json").write_text(json.dumps(
        {"name": f"{name}-user", "version": "1.0.0", "private": True,
         "dependencies": {dependency: "^1.0.0"}}))
    userconfig = tmp_path / f"{name}.npmrc"
    userconfig.write_text(f"registry={registry}\naudit=false\nfund=false\n")
    return run([tool("npm"), "install", "--userconfig", str(userconfig), "--cache",
                str(tmp_path / f"{name}-cache"), "--no-audit", "--no-fund"], work,
               npm_env(tmp_path / f"{name}-home"), check=False)


def _approve(config: Path, ecosystem: str, name: str) -> str:
    done = subprocess.run(  # noqa: S603
        [*stockade_command(), "approve", ecosystem, name, "--reason", "reviewed fork",
         "--by", "e2e", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wait_allowed(base: str, ecosystem: str, name: str) -> None:
    """Poll the explain API until the running server has the approval in force."""
    deadline = time.monotonic() + 120
    while True:
        url = f"{base}/_stockade/explain/{ecosystem}/{name}"
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310
            decision = json.load(resp)["decision"]
        if decision["decision"] == "allow":
            return
        assert time.monotonic() < deadline, f"the approval of {name} was never applied"
        time.sleep(0.1)


def test_held_then_approved_then_installed(
        tmp_path: Path, upstreams: tuple[str, ThreadedServer],
        proxy_process: Any) -> None:
    npm_url, pypi_server = upstreams
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    proxy = proxy_process({
        "storage": {"path": str(tmp_path / "data")},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm_url, "retries": 0}]},
        "pypi": {"upstreams": [{"name": "pypi", "url": pypi_server.url("/simple/"),
                                "retries": 0}]},
        "maven": {"upstreams": []},
        "policy": {"file": str(policy), "reload_check_s": 0.2},
    })
    config = tmp_path / "stockade.yaml"
    registry, simple = f"{proxy.url}/npm/", f"{proxy.url}/pypi/simple/"

    # npm prints the hold's reason, from the 403's JSON body
    held = _npm_install(tmp_path, "held", "axios-2", registry)
    assert held.returncode != 0
    assert 'Blocked by stockade: "axios-2" resembles "axios" and is new (first release ' \
           "2 days ago, 1 release); held until " in held.stderr
    assert "unless approved (rule typosquat)" in held.stderr
    # pip prints it at the file download
    pip_held = pip_install(tmp_path, simple, "rich-click-3", name="pip-held")
    assert pip_held.returncode != 0
    out = pip_held.stdout + pip_held.stderr
    assert 'Blocked by stockade: "rich-click-3" resembles "rich-click" and is new' in out
    assert "held until" in out

    # old look-alikes with many releases install, and are recorded
    old = _npm_install(tmp_path, "old", "axios-3", registry)
    assert old.returncode == 0, old.stdout + old.stderr
    pip_old = pip_install(tmp_path, simple, "flask-cors-2", name="pip-old")
    assert pip_old.returncode == 0, pip_old.stdout + pip_old.stderr
    assert "flask-cors-2-1.5" in pip_old.stdout or "flask_cors_2-1.5" in pip_old.stdout

    # approved: both install
    assert "approved by e2e until" in _approve(config, "npm", "axios-2")
    _approve(config, "pypi", "rich-click-3")
    _wait_allowed(proxy.url, "npm", "axios-2")
    _wait_allowed(proxy.url, "pypi", "rich-click-3")
    again = _npm_install(tmp_path, "approved", "axios-2", registry)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "approved" / "node_modules" / "axios-2" / "package.json").is_file()
    pip_again = pip_install(tmp_path, simple, "rich-click-3", name="pip-approved")
    assert pip_again.returncode == 0, pip_again.stdout + pip_again.stderr

    records = [json.loads(line) for line in decision_log_path(
        load_settings(config, environ={})).read_text().splitlines() if line.strip()]
    approvals = {r["name"] for r in records if r["client"] == "stockade approve"}
    assert approvals == {"axios-2", "rich-click-3"}
    noted = {r["name"] for r in records if r["decision"] == "warn"}
    assert {"axios-3", "flask-cors-2"} <= noted
    holds = {r["name"] for r in records if r["decision"] == "hold"}
    assert {"axios-2", "rich-click-3"} <= holds
