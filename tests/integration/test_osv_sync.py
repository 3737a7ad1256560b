"""``stockade osv sync``: OSV's per-ecosystem exports fetched from a loopback host laid out
as osv.dev's bucket, verified, swapped in, and put in force in a running proxy."""

from __future__ import annotations

import asyncio
import io
import math
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.cli import main
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.static import StaticHost
from testbed.osv_export import export_zip, serve_export

FIXTURES = Path(__file__).parents[1] / "fixtures" / "osv"
MAL = {
    "id": "MAL-2099-0002", "modified": "2099-01-01T00:00:00Z",
    "summary": "Malicious code in demo-widget (npm)",
    "affected": [{"package": {"ecosystem": "npm", "name": "demo-widget"},
                  "versions": ["1.0.1"]}],
}


def export(ecosystem: str, *extra: dict[str, Any]) -> bytes:
    return export_zip(FIXTURES, ecosystem, *extra)


def serve(root: Path, ecosystem: str, data: bytes) -> None:
    serve_export(root, ecosystem, data)


def config(tmp_path: Path, url: str, npm_url: str = "http://127.0.0.1:9/",
           **osv: Any) -> Path:
    (tmp_path / "intel").mkdir(exist_ok=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  osv: {paths: [intel], min_severity: critical}\n")
    path = tmp_path / "stockade.yaml"
    path.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm_url}]},
        "policy": {"file": str(policy), "reload_check_s": 0.05},
        "osv": {"url": url, "ecosystems": ["npm", "PyPI"], **osv},
    }))
    return path


@pytest.fixture
async def host(tmp_path: Path) -> Any:
    served = tmp_path / "bucket"
    serve(served, "npm", export("npm"))
    serve(served, "PyPI", export("PyPI"))
    started = await StaticHost(root=served).start()
    yield started
    await started.stop()


async def sync(cfg: Path) -> int:
    # the command runs its own event loop, as from a shell
    return int(await asyncio.to_thread(main, ["osv", "sync", "--config", str(cfg)]))


async def test_sync_fetches_then_asks_conditionally(
        tmp_path: Path, host: StaticHost, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, host.url)
    assert await sync(cfg) == 0
    assert capsys.readouterr().out.splitlines() == ["npm: updated: 2 records",
                                                    "PyPI: updated: 2 records"]
    assert (tmp_path / "intel" / "osv-npm.zip").read_bytes() == export("npm")
    assert (tmp_path / "intel" / "osv-PyPI.zip").read_bytes() == export("PyPI")

    assert await sync(cfg) == 0
    assert capsys.readouterr().out.splitlines() == ["npm: unchanged", "PyPI: unchanged"]
    assert all("If-None-Match" in h for h in host.headers_seen[-2:])
    assert host.count("/npm/all.zip") == 2


@pytest.mark.parametrize(("body", "why"), [
    (b"PK\x03\x04 not really a zip", "not a readable zip"),
    (b"", "not a readable zip"),
    ("json", "x.json: not a valid OSV record"),
    ("empty", "the export holds no OSV records"),
])
async def test_a_bad_export_is_refused_and_the_old_one_stays(
        tmp_path: Path, host: StaticHost, capsys: pytest.CaptureFixture[str],
        body: bytes | str, why: str) -> None:
    cfg = config(tmp_path, host.url)
    assert await sync(cfg) == 0
    capsys.readouterr()
    if body == "json":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("x.json", b'{"no": "id"}')
        body = buffer.getvalue()
    elif body == "empty":
        buffer = io.BytesIO()
        zipfile.ZipFile(buffer, "w").close()
        body = buffer.getvalue()
    assert isinstance(body, bytes)
    serve(host.root, "npm", body)
    assert await sync(cfg) == 1
    out = capsys.readouterr().out
    assert f"npm: failed: {why}" in out
    assert "PyPI: unchanged" in out
    assert (tmp_path / "intel" / "osv-npm.zip").read_bytes() == export("npm")
    assert sorted(p.name for p in (tmp_path / "intel").iterdir()) == [
        "osv-PyPI.zip", "osv-npm.zip"]


async def test_an_unreachable_source_fails_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9/")
    assert await sync(cfg) == 1
    assert "npm: failed" in capsys.readouterr().out


async def test_the_server_syncs_and_puts_new_intel_in_force(
        aiohttp_client: Any, tmp_path: Path, host: StaticHost) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("demo-widget", "1.0.0")
        registry.publish("demo-widget", "1.0.1")
        cfg = config(tmp_path, host.url, registry.url, interval=0.1)
        client = await aiohttp_client(make_app(load_settings(cfg, environ={}), environ={}))
        metrics = client.app[SERVICES].metrics.registry
        tgz = "/npm/demo-widget/-/demo-widget-1.0.1.tgz"

        async def synced(result: str, count: float) -> None:
            deadline = asyncio.get_running_loop().time() + 30
            while (metrics.get_sample_value("stockade_osv_syncs_total", {
                    "ecosystem": "npm", "result": result}) or 0) < count:
                assert asyncio.get_running_loop().time() < deadline, "never synced"
                await asyncio.sleep(0.02)

        await synced("updated", 1)

        def age() -> float:
            value = metrics.get_sample_value("stockade_osv_age_seconds")
            assert value is not None
            return float(value)

        deadline = asyncio.get_running_loop().time() + 30
        while math.isnan(age()):  # no OSV data in force until the reloader reads the export
            assert asyncio.get_running_loop().time() < deadline, "never reloaded"
            await asyncio.sleep(0.02)
        assert age() > 0  # the newest fixture record's age
        assert (await client.get(tgz)).status == 200

        serve(host.root, "npm", export("npm", MAL))
        await synced("updated", 2)
        deadline = asyncio.get_running_loop().time() + 30
        while (await client.get(tgz)).status != 403:  # the reloader puts it in force
            assert asyncio.get_running_loop().time() < deadline, "never refused"
            await asyncio.sleep(0.05)
        refused = await client.get(tgz)
        assert "MAL-2099-0002" in (await refused.json())["error"]
        assert age() == 0.0  # the new record is dated 2099
    finally:
        await registry.stop()
