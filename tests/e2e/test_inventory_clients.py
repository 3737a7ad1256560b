"""``stockade inventory`` after real pip and npm installs under two tokens: a CycloneDX
document the library's own schema validation accepts, listing exactly what each was served.

The proxy runs in-process on a loopback socket (its token check stood in by a middleware
mapping each client's credentials to an identity and team); pip and npm run as processes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.cli import main
from stockade.proxy.identity import Identity, set_identity
from stockade.proxy.served import read_served
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.npm_registry import npm_env, run, tool

# Real pip and npm processes: past pytest's 120 s default on a loaded two-core machine;
# the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TOKENS = {"tok-alice": Identity("alice", "payments"), "tok-bob": Identity("bob", "search")}


@web.middleware
async def tokens(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for token auth: a Bearer token, or the password of Basic credentials."""
    auth = request.headers.get("Authorization", "")
    token = None
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ")
    elif auth.startswith("Basic "):
        token = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")[2]
    if token in TOKENS:
        set_identity(request, TOKENS[token])
    response: web.StreamResponse = await handler(request)
    return response


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[ThreadedServer, Path]]:
    pypi = FakePyPI()
    pypi.add_wheel("inv-app", "1.0", requires=["inv-lib>=1.0"])
    pypi.add_wheel("inv-lib", "1.0")
    pypi.add_wheel("inv-lib", "2.0")
    npm = FakeNpm()
    npm.publish("inv-left", "1.0.0")
    npm.publish("inv-right", "2.1.0")
    upstreams = [ThreadedServer(pypi.app).start()]
    upstreams[0].call(npm.start())  # FakeNpm serves on its own TestServer, on that loop
    cfg = tmp_path / "stockade.yaml"
    cfg.write_text(json.dumps({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": upstreams[0].url("/simple/")}]},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm.url}]},
        "maven": {"upstreams": []},
    }))

    def app() -> web.Application:
        built = make_app(load_settings(cfg, environ={}), environ={})
        built.middlewares.append(tokens)
        return built

    server = ThreadedServer(app).start()
    try:
        yield server, cfg
    finally:
        server.stop()
        upstreams[0].call(npm.stop())
        upstreams[0].stop()


def pip_install(tmp_path: Path, index: str, *reqs: str) -> None:
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir",
         "--disable-pip-version-check", "--target", str(target), "--index-url", index, *reqs],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def npm_install(tmp_path: Path, registry: str, token: str, *specs: str) -> None:
    work = tmp_path / "npm-project"
    work.mkdir(parents=True)
    (work / "package.json").write_text(json.dumps({"name": "p", "version": "1.0.0",
                                                   "private": True}))
    env = npm_env(tmp_path / "npm-home")
    userconfig = tmp_path / ".npmrc"
    host = registry.removeprefix("http:")
    userconfig.write_text(f"registry={registry}\n{host}:_authToken={token}\n"
                          "audit=false\nfund=false\nfetch-retries=0\n")
    run([tool("npm"), "install", *specs, "--userconfig", str(userconfig), "--cache",
         str(tmp_path / "npm-cache"), "--no-audit", "--no-fund"], work, env)


def inventory(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    capsys.readouterr()
    assert main(["inventory", "--config", str(cfg), "--since", since, *args]) == 0
    return capsys.readouterr().out


def test_inventory_after_pip_and_npm_installs_under_two_tokens(
        tmp_path: Path, proxy: tuple[ThreadedServer, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    server, cfg = proxy
    index = server.url("/pypi/simple/").replace("http://", "http://alice:tok-alice@")
    pip_install(tmp_path / "alice", index, "inv-app")
    npm_install(tmp_path / "bob", server.url("/npm/"), "tok-bob", "inv-left", "inv-right@^2")

    served = tmp_path / "data" / "served"
    deadline = time.monotonic() + 60
    while len({(s.name, s.identity) for s in read_served(served, since=0)}) < 4:
        assert time.monotonic() < deadline, "the served record was never written"
        time.sleep(0.05)

    documents = {}
    for team in ("payments", "search"):
        text = inventory(cfg, capsys, "--team", team, "--format", "cyclonedx")
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
        assert error is None, error
        documents[team] = json.loads(text)

    def purls(doc: dict[str, Any]) -> set[str]:
        return {c["purl"].partition("?")[0] for c in doc["components"]}

    assert purls(documents["payments"]) == {"pkg:pypi/inv-app@1.0", "pkg:pypi/inv-lib@2.0"}
    assert purls(documents["search"]) == {"pkg:npm/inv-left@1.0.0",
                                          "pkg:npm/inv-right@2.1.0"}
    for doc in documents.values():
        assert doc["bomFormat"] == "CycloneDX"
        for component in doc["components"]:
            (digest,) = component["hashes"]
            assert digest["alg"] == "SHA-256" and len(digest["content"]) == 64
    alice = {p["value"].split()[0] for c in documents["payments"]["components"]
             for p in c["properties"] if p["name"] == "stockade:fetched_by"}
    assert alice == {"alice"}

    everything = json.loads(inventory(cfg, capsys, "--format", "json"))
    who = {(a["name"], f["identity"], f["team"]) for a in everything["artifacts"]
           for f in a["fetched_by"]}
    assert who == {("inv-app", "alice", "payments"), ("inv-lib", "alice", "payments"),
                   ("inv-left", "bob", "search"), ("inv-right", "bob", "search")}
