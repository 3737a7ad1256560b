"""``stockade audit --diff OLD_POLICY``: what a policy edit would newly refuse and newly allow
among the cached artifacts, before it is applied."""

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
from testbed.fakes.npm_upstream import FakeNpm


async def test_audit_diff_lists_what_flips(aiohttp_client: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("demo-widget", "1.0.0")
        registry.publish("demo-widget", "1.0.1")
        registry.publish("left-pad", "1.0.0")
        policy = tmp_path / "policy.yaml"
        policy.write_text("")
        cfg = tmp_path / "stockade.yaml"
        cfg.write_text(yaml.safe_dump({
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}]},
            "policy": {"file": str(policy), "reload_check_s": 0},
        }))
        client = await aiohttp_client(make_app(load_settings(cfg, environ={}), environ={}))
        for path in ("demo-widget/-/demo-widget-1.0.0.tgz", "demo-widget/-/demo-widget-1.0.1.tgz",
                     "left-pad/-/left-pad-1.0.0.tgz"):
            response = await client.get(f"/npm/{path}")
            assert response.status == 200
            await response.read()  # stored once the whole file was read and checked
        await client.close()

        old = tmp_path / "old.yaml"
        old.write_text("rules:\n  lists:\n    deny:\n"
                       "      - {ecosystem: npm, name: left-pad, reason: banned}\n")
        policy.write_text("rules:\n  lists:\n    deny:\n      - {ecosystem: npm, name: "
                          "demo-widget, versions: '1.0.1', reason: hijacked}\n")
        code = await asyncio.to_thread(main, ["audit", "--config", str(cfg), "--diff", str(old),
                                              "--json"])
        out = capsys.readouterr()
        lines = sorted((json.loads(line) for line in out.out.splitlines()),
                       key=lambda d: d["name"])
        assert [(d["change"], d["name"], d["version"], d["rule"]) for d in lines] == [
            ("newly_refused", "demo-widget", "1.0.1", "lists"),
            ("newly_allowed", "left-pad", "1.0.0", "lists")]
        assert "hijacked" in lines[0]["reason"]
        assert "banned" in lines[1]["reason"]
        assert "newly refuses 1 and newly allows 1" in out.err
        assert code == 1

        code = await asyncio.to_thread(main, ["audit", "--config", str(cfg), "--diff",
                                              str(policy)])
        out = capsys.readouterr()
        assert out.out == ""  # no change, nothing flips
        assert code == 0
    finally:
        await registry.stop()
