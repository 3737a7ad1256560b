"""A changed policy file is put in force without a restart; a broken one never is."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from stockade.config.load import ConfigError, load_settings
from stockade.config.model import Settings
from stockade.proxy.app import make_app
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine


def engine_from_file(settings: Settings) -> FakeEngine:
    """A stand-in for the policy file loader: a JSON list of blocked names."""
    assert settings.policy.file is not None
    text = settings.policy.file.read_text()
    try:
        names = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{settings.policy.file}: not valid: {exc}") from exc
    return FakeEngine(blocked_names=set(names), revision=f"r-{len(text)}-{sorted(names)}")


async def wait_for(condition: Any, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


async def test_reload_on_change_and_broken_file_rejected(aiohttp_client: Any,
                                                         tmp_path: Path) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("left-pad", "1.0.0")
        policy = tmp_path / "policy.json"
        policy.write_text("[]")
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}]},
            "policy": {"file": str(policy), "reload_check_s": 0.05},
        })
        client = await aiohttp_client(make_app(settings, environ={},
                                               engine_factory=engine_from_file))
        gate = client.app[SERVICES].gate
        assert (await client.get("/npm/left-pad")).status == 200

        policy.write_text('["left-pad"]')
        await wait_for(lambda: "left-pad" in gate.revision)
        assert (await client.get("/npm/left-pad")).status == 403

        in_force = gate.revision
        policy.write_text('["left-pad", ')  # broken: the running policy stays
        registry_ = client.app[SERVICES].metrics.registry
        await wait_for(lambda: registry_.get_sample_value(
            "stockade_policy_reloads_total", {"result": "rejected"}) == 1)
        assert gate.revision == in_force
        assert (await client.get("/npm/left-pad")).status == 403
        metrics = await (await client.get("/metrics")).text()
        assert 'stockade_policy_reloads_total{result="rejected"} 1.0' in metrics

        policy.write_text("[]")
        await wait_for(lambda: gate.revision != in_force)
        assert (await client.get("/npm/left-pad")).status == 200
    finally:
        await registry.stop()


async def test_sighup_reloads(aiohttp_client: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text("[]")
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "policy": {"file": str(policy), "reload_check_s": 0},
    })
    client = await aiohttp_client(make_app(settings, environ={},
                                           engine_factory=engine_from_file))
    gate = client.app[SERVICES].gate
    before = gate.revision
    policy.write_text('["x"]')
    await asyncio.sleep(0.1)
    assert gate.revision == before  # polling is off: only SIGHUP reloads
    loop = asyncio.get_running_loop()
    assert loop._signal_handlers.get(signal.SIGHUP) is not None  # type: ignore[attr-defined]
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: gate.revision != before)
