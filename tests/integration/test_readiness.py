"""/readyz looks at free disk space, and says which figure failed."""

from __future__ import annotations

import shutil
from pathlib import Path

from stockade.config.load import load_settings
from stockade.config.model import Settings
from tests.conftest import ProxyFactory


def _settings(tmp_path: Path, min_free_bytes: int) -> Settings:
    return load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data"), "min_free_bytes": min_free_bytes},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
    })


async def test_not_ready_below_the_free_space_minimum(tmp_path: Path,
                                                      make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(_settings(tmp_path, 2**62))  # more than any disk has
    resp = await proxy.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not ready"
    assert body["storage_writable"] is True
    assert body["storage_min_free_bytes"] == 2**62
    free = body["storage_free_bytes"]
    assert 0 < free < 2**62
    assert any("below storage.min_free_bytes" in r and str(free) in r
               for r in body["reasons"])


async def test_ready_with_room_and_the_free_space_is_exported(
        tmp_path: Path, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(_settings(tmp_path, 0))
    resp = await proxy.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert "reasons" not in body
    text = await (await proxy.get("/metrics")).text()
    (line,) = [x for x in text.splitlines() if x.startswith("stockade_storage_free_bytes ")]
    exported = float(line.split()[1])
    actual = shutil.disk_usage(tmp_path).free
    assert abs(exported - actual) < 512 * 1024**2  # the same disk, give or take other writers
