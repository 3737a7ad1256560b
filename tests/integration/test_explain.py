"""``/_stockade/explain/...``: the decision a request would get, rule by rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI


async def proxy(aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, *, npm_url: str,
                pypi_url: str) -> Any:
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm_url, "retries": 0}]},
        "pypi": {"upstreams": [{"name": "pypi", "url": pypi_url, "retries": 0}]},
    })
    return await aiohttp_client(make_app(settings, environ={}, engine_factory=lambda _s: engine))


async def test_explain_npm_name_lists_hidden_versions(aiohttp_client: Any, tmp_path: Path,
                                                     fake_pypi: FakePyPI) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("@acme/x", "1.0.0", time="2024-01-01T00:00:00.000Z")
        registry.publish("@acme/x", "2.0.0", time="2024-02-01T00:00:00.000Z")
        engine = FakeEngine(blocked_versions={("@acme/x", "2.0.0")})
        client = await proxy(aiohttp_client, tmp_path, engine, npm_url=registry.url,
                             pypi_url=fake_pypi.url)
        body = await (await client.get("/_stockade/explain/npm/@acme/x")).json()
        assert body["name"] == "@acme/x"
        assert body["decision"]["decision"] == "allow"
        assert body["versions"]["total"] == 2
        assert list(body["versions"]["hidden"]) == ["2.0.0"]
        assert body["versions"]["hidden"]["2.0.0"]["rule"] == "age"
        one = await (await client.get("/_stockade/explain/npm/@acme/x/2.0.0")).json()
        assert one["decision"]["refuses"] is True
        assert one["facts"]["published_at"].startswith("2024-02-01")
        assert one["verdicts"]
    finally:
        await registry.stop()


async def test_explain_pypi_and_errors(aiohttp_client: Any, tmp_path: Path,
                                       fake_pypi: FakePyPI) -> None:
    fake_pypi.add_wheel("reqeusts", "1.0")
    engine = FakeEngine(blocked_names={"reqeusts"})
    client = await proxy(aiohttp_client, tmp_path, engine, npm_url="http://127.0.0.1:9/",
                         pypi_url=fake_pypi.url)
    body = await (await client.get("/_stockade/explain/pypi/reqeusts")).json()
    assert body["decision"]["refuses"] is True
    assert body["decision"]["reason"]
    assert body["facts"]["upstream"] == "pypi"
    down = await (await client.get("/_stockade/explain/npm/left-pad")).json()
    assert "facts_error" in down
    assert down["decision"]["decision"] == "allow"
    bad = await client.get("/_stockade/explain/cargo/serde")
    assert bad.status == 400
    assert "unknown ecosystem" in (await bad.json())["error"]
    for path, kind in (("pypi/req%20uests", "Python project name"),
                       ("npm/" + "a" * 300, "npm package name"),
                       ("maven/guava", "Maven groupId:artifactId")):
        malformed = await client.get(f"/_stockade/explain/{path}")
        assert malformed.status == 400, path
        assert f"is not a valid {kind}" in (await malformed.json())["error"]
