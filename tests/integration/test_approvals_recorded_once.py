"""An approval is recorded in the decision log once, when it comes into force, not
again at every start of the server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from stockade.config.load import load_settings
from stockade.proxy.app import decision_log_path, make_app
from stockade.proxy.cli import main
from stockade.proxy.state import SERVICES


def _config(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(
        "rules: {typosquat: {approvals: approvals.yaml}}\n")
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "policy": {"file": str(tmp_path / "policy.yaml"), "reload_check_s": 0.05},
    }))
    return config


def _approvals(config: Path) -> list[str]:
    path = decision_log_path(load_settings(config, environ={}))
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["name"] for r in records if r["client"] == "stockade approve"]


async def _approve(config: Path, name: str) -> None:
    assert await asyncio.to_thread(
        main, ["approve", "npm", name, "--reason", "ours", "--config", str(config)]) == 0


async def _start_and_stop(aiohttp_client: Any, config: Path) -> Any:
    client = await aiohttp_client(make_app(load_settings(config, environ={})))
    gate = client.app[SERVICES].gate
    await client.close()
    return gate


async def test_an_approval_is_recorded_once_across_restarts(
        aiohttp_client: Any, tmp_path: Path) -> None:
    config = _config(tmp_path)
    await _approve(config, "axios-2")
    await _start_and_stop(aiohttp_client, config)
    assert _approvals(config) == ["axios-2"]  # in force at the first start: recorded
    await _start_and_stop(aiohttp_client, config)
    await _start_and_stop(aiohttp_client, config)
    assert _approvals(config) == ["axios-2"]  # not again at each start

    await _approve(config, "lodash-2")  # a new one, while stopped: recorded at the start
    await _start_and_stop(aiohttp_client, config)
    assert _approvals(config) == ["axios-2", "lodash-2"]

    # One put in force while running (the reloader) is not recorded again at a restart.
    client = await aiohttp_client(make_app(load_settings(config, environ={})))
    gate = client.app[SERVICES].gate
    before = gate.revision
    await _approve(config, "react-2")
    deadline = asyncio.get_running_loop().time() + 30
    while gate.revision == before or "react-2" not in _approvals(config):
        assert asyncio.get_running_loop().time() < deadline, "the approval was not recorded"
        await asyncio.sleep(0.02)
    await client.close()
    await _start_and_stop(aiohttp_client, config)
    assert _approvals(config) == ["axios-2", "lodash-2", "react-2"]
