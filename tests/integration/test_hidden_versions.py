"""Versions a metadata decision refuses are counted and recorded once per document.

Before, versions hidden from an index page never reached the decision log or
``stockade_policy_decisions_total``, and audit-mode hits were counted as plain
blocks.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory


async def _records(path: Path, count: int) -> list[dict[str, Any]]:
    """The log's records once it holds ``count`` of them (the writer is asynchronous)."""
    for _ in range(500):
        if path.exists():
            lines = [json.loads(line) for line in path.read_text().splitlines() if line]
            if len(lines) >= count:
                return lines
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never held {count} records")


async def _decisions(client: TestClient[Any, Any]) -> dict[tuple[str, ...], float]:
    text = await (await client.get("/metrics")).text()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "stockade_policy_decisions":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    out[(labels["rule"], labels["decision"], labels["mode"])] = sample.value
    return out


async def test_hidden_versions_recorded_once_per_document(
    fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine, tmp_path: Path
) -> None:
    for version in ("1.0", "1.1", "2.0", "2.1"):
        fake_pypi.add_wheel("demo", version)
    engine.blocked_versions |= {("demo", "2.0"), ("demo", "2.1")}
    engine.audited_versions.add(("demo", "1.1"))
    proxy = await make_proxy(upstream=fake_pypi)
    for _ in range(3):  # three installs read the same page
        page = await proxy.get("/pypi/simple/demo/")
        assert page.status == 200
        assert page.headers["X-Stockade-Filtered"] == "2 versions hidden by rules: age"
    records = await _records(tmp_path / "data" / "decisions.jsonl", 2)
    by_rule = {r["rule"]: r for r in records}
    assert sorted(by_rule) == ["age", "osv"]
    assert by_rule["age"]["versions"] == ["2.0", "2.1"]
    assert by_rule["age"]["audit"] is False and by_rule["age"]["name"] == "demo"
    assert by_rule["osv"]["versions"] == ["1.1"] and by_rule["osv"]["audit"] is True
    counted = await _decisions(proxy)
    assert counted[("age", "block", "enforce")] == 2
    assert counted[("osv", "block", "audit")] == 1
    await proxy.close()  # writes out everything queued
    lines = (tmp_path / "data" / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 2


async def test_maven_metadata_versions_recorded_once(aiohttp_client: Any, tmp_path: Path) -> None:
    from stockade.config.load import load_settings
    from stockade.proxy.app import make_app
    from testbed.fakes.maven_upstream import FakeMaven

    repo = await FakeMaven().start()
    try:
        for version in ("1.0", "2.0"):
            repo.add("org.example", "lib", version)
        engine = FakeEngine(blocked_versions={("org.example:lib", "2.0")})
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "npm": {"upstreams": []},
            "maven": {"upstreams": [{"name": "central", "url": repo.url}]},
        })
        proxy = await aiohttp_client(make_app(settings, environ={},
                                              engine_factory=lambda _s: engine))
        for _ in range(3):
            resp = await proxy.get("/maven/org/example/lib/maven-metadata.xml")
            assert "<version>2.0</version>" not in await resp.text()
        assert (await _decisions(proxy))[("age", "block", "enforce")] == 1
        await proxy.close()
        (record,) = [json.loads(line) for line in
                     (tmp_path / "data" / "decisions.jsonl").read_text().splitlines()]
        assert record["versions"] == ["2.0"]
        assert record["name"] == "org.example:lib"
    finally:
        await repo.stop()
