"""The real policy engine in a running proxy: a policy file, OSV imports, audit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.cli import main
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm

MAL = {
    "id": "MAL-2099-0001", "summary": "Malicious code in demo-widget (npm)",
    "affected": [{"package": {"ecosystem": "npm", "name": "demo-widget"},
                  "versions": ["1.0.1"]}],
}


def _npm_config(tmp_path: Path, npm_url: str, policy: Path, **policy_keys: Any) -> Path:
    """A config file: one npm upstream, no PyPI or Maven, the policy file given."""
    config_file = tmp_path / "stockade.yaml"
    config_file.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm_url}]},
        "policy": {"file": str(policy), **policy_keys},
    }))
    return config_file


async def test_osv_import_reaches_a_running_proxy_and_audit_reports_the_cache(
    aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("demo-widget", "1.0.0", time="2024-01-01T00:00:00.000Z")
        registry.publish("demo-widget", "1.0.1", time="2024-02-01T00:00:00.000Z")
        (tmp_path / "osv").mkdir()
        policy = tmp_path / "policy.yaml"
        policy.write_text(
            "rules:\n"
            "  osv: {paths: [osv], min_severity: critical}\n"
            "  lists: {deny: [{ecosystem: npm, name: event-stream, versions: '3.3.6',"
            " reason: backdoor, owner: security}]}\n")
        config_file = _npm_config(tmp_path, registry.url, policy, reload_check_s=0.05)
        client = await aiohttp_client(make_app(load_settings(config_file, environ={})))
        gate = client.app[SERVICES].gate
        tgz = "/npm/demo-widget/-/demo-widget-1.0.1.tgz"
        assert (await client.get(tgz)).status == 200  # cached now

        record = tmp_path / "MAL-2099-0001.json"
        record.write_text(json.dumps(MAL))
        before = gate.revision
        assert main(["osv", "import", str(record), "--config", str(config_file)]) == 0
        assert "imported 1 advisories" in capsys.readouterr().out
        deadline = asyncio.get_running_loop().time() + 30
        while gate.revision == before:  # the reloader notices the import: poll
            assert asyncio.get_running_loop().time() < deadline, "the policy never reloaded"
            await asyncio.sleep(0.02)
        refused = await client.get(tgz)
        assert refused.status == 403
        assert "known malicious" in (await refused.json())["error"]
        doc = await (await client.get("/npm/demo-widget")).json()
        assert list(doc["versions"]) == ["1.0.0"]

        # the command runs its own event loop, as it does from a shell
        assert await asyncio.to_thread(main, ["audit", "--config", str(config_file), "--json"]) == 1
        out = capsys.readouterr()
        (line,) = out.out.splitlines()
        found = json.loads(line)
        assert found["name"] == "demo-widget"
        assert found["version"] == "1.0.1"
        assert found["rule"] == "osv"
        assert "1 would now be refused" in out.err
    finally:
        await registry.stop()


def test_osv_import_rejects_unreadable_input(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "data")}}))
    assert main(["osv", "import", str(tmp_path / "absent.zip"), "--config", str(config)]) == 2
    assert "no such file" in capsys.readouterr().err


async def test_sdists_hidden_where_a_wheel_exists(aiohttp_client: Any, tmp_path: Path,
                                                  fake_pypi: Any) -> None:
    wheel = fake_pypi.add_wheel("demo-pkg", "1.0")
    sdist = fake_pypi.add_sdist("demo-pkg", "1.0")
    only = fake_pypi.add_sdist("demo-pkg", "0.9")
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {install_scripts: {hide_sdist_where_wheel: true,"
                      " pypi_sdist_only: warn}}\n")
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}]},
        "policy": {"file": str(policy)},
    })
    client = await aiohttp_client(make_app(settings, environ={}))
    resp = await client.get("/pypi/simple/demo-pkg/")
    page = await resp.text()
    assert wheel.filename in page
    assert only.filename in page  # no wheel to fall back on: kept (and warned)
    assert sdist.filename not in page
    assert resp.headers["X-Stockade-Filtered-Files"] == "1 source distributions hidden"
    refused = await client.get(f"/pypi/files/demo-pkg/{sdist.filename}")
    assert refused.status == 403
    assert "a wheel of the same version exists" in refused.reason


async def test_check_server_answers_as_the_server_does(
    aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A version the server never served: offline, `check` has no publish date for it and
    # the cooldown holds it back; asked through the server, the upstream's date decides.
    registry = await FakeNpm().start()
    try:
        registry.publish("demo-widget", "1.0.0", time="2024-01-01T00:00:00.000Z")
        policy = tmp_path / "policy.yaml"
        policy.write_text("rules:\n  typosquat: {}\n  cooldown: {min_age: 3d}\n")
        config_file = _npm_config(tmp_path, registry.url, policy)
        client = await aiohttp_client(make_app(load_settings(config_file, environ={})))
        server = str(client.make_url("/"))

        offline = await asyncio.to_thread(
            main, ["check", "npm", "demo-widget@1.0.0", "--config", str(config_file)])
        assert offline == 1
        assert "[cooldown]" in capsys.readouterr().out

        asked = await asyncio.to_thread(
            main, ["check", "npm", "demo-widget@1.0.0", "loadsh", "--json", "--server", server])
        assert asked == 1  # loadsh is refused
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(d["name"], d["version"], d["decision"]) for d in lines] == [
            ("demo-widget", "1.0.0", "allow"), ("loadsh", None, "block")]
        assert lines[1]["rule"] == "typosquat" and lines[1]["target"] == "lodash"

        missing = await asyncio.to_thread(
            main, ["check", "npm", "demo-widget@9.9.9", "--server", server])
        captured = capsys.readouterr()
        assert missing == 1  # no date: the cooldown refuses, and says why the facts lack
        assert "not in the upstream's metadata" in captured.err
    finally:
        await registry.stop()

    # Nothing listening: a clear error, exit 2.
    assert await asyncio.to_thread(
        main, ["check", "npm", "lodash", "--server", "http://127.0.0.1:9"]) == 2
    assert "cannot ask http://127.0.0.1:9" in capsys.readouterr().err
