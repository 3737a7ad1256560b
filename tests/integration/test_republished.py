"""A file swapped behind its name is refused (rule ``republished``), never re-cached.

The real default policy runs here (the republished rule is always on): the
proxy serves a file once, the upstream then publishes other bytes under the
same name with a new digest on its page, and the next request is a 403 naming
the rule, with both digests in full in the decision log and nothing fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import load_engine, make_app
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI

_TTL = {"metadata_ttl_s": 0.001}  # every request revalidates the page


async def _decisions(path: Path, rule: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The decision log's records of ``rule``, once one is written (polled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        found = []
        if path.is_file():
            found = [r for line in path.read_text().splitlines() if line.strip()
                     and (r := json.loads(line)).get("rule") == rule]
        if found or loop.time() > deadline:
            return found
        await asyncio.sleep(0.02)


async def _pypi_client(aiohttp_client: Any, tmp_path: Path,
                      fake_pypi: FakePyPI) -> TestClient[Any, Any]:
    """A client of stockade proxying ``fake_pypi`` with short metadata lifetimes."""
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}], "cache": _TTL},
        "npm": {"upstreams": []}, "maven": {"upstreams": []},
    })
    client: TestClient[Any, Any] = await aiohttp_client(
        make_app(settings, environ={}, engine_factory=load_engine))
    return client


def _blobs(tmp_path: Path) -> set[Path]:
    return {p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()}


async def test_swapped_wheel_is_refused_with_both_digests(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    dist = fake_pypi.add_wheel("stockade-swaptest", "1.0")
    client = await _pypi_client(aiohttp_client, tmp_path, fake_pypi)
    url = f"/pypi/files/stockade-swaptest/{dist.filename}"
    first = await client.get(url)
    assert first.status == 200
    assert await first.read() == dist.data
    old = dist.sha256
    stored = _blobs(tmp_path)

    dist.data = dist.data + b"\0swapped"  # same file name, other bytes, new page digest
    new = dist.sha256
    fetched = fake_pypi.count(dist.filename)
    again = await client.get(url)

    assert again.status == 403
    assert again.reason is not None and "(rule republished)" in again.reason
    assert old[:12] in again.reason and new[:12] in again.reason
    assert old not in again.reason  # the reason shows them cut; the log in full
    assert fake_pypi.count(dist.filename) == fetched  # the new bytes were never fetched
    assert _blobs(tmp_path) == stored
    [record] = await _decisions(tmp_path / "data" / "decisions.jsonl", "republished")
    assert record["evidence"] == {"algorithm": "sha256", "admitted_digest": old,
                                  "new_digest": new}
    assert record["filename"] == dist.filename


async def test_republished_npm_tarball_is_refused(aiohttp_client: Any, tmp_path: Path) -> None:
    registry = await FakeNpm().start()
    try:
        pub = registry.publish("stockade-swaptest", "1.0.0")
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}], "cache": _TTL},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        })
        client: TestClient[Any, Any] = await aiohttp_client(
            make_app(settings, environ={}, engine_factory=load_engine))
        url = "/npm/stockade-swaptest/-/stockade-swaptest-1.0.0.tgz"
        first = await client.get(url)
        assert first.status == 200
        assert await first.read() == pub.data  # the fill is over: its record is written
        old = hashlib.sha512(pub.data).hexdigest()
        pub.data = pub.data + b"\0"
        new = hashlib.sha512(pub.data).hexdigest()
        fetched = registry.count("stockade-swaptest-1.0.0.tgz")

        again = await client.get(url)

        assert again.status == 403
        body = await again.json()
        assert "republished" in body["error"] and old[:12] in body["error"]
        assert registry.count("stockade-swaptest-1.0.0.tgz") == fetched
        [record] = await _decisions(tmp_path / "data" / "decisions.jsonl", "republished")
        assert record["evidence"]["algorithm"] == "sha512"
        assert (record["evidence"]["admitted_digest"], record["evidence"]["new_digest"]) == \
            (old, new)
    finally:
        await registry.stop()


async def test_unchanged_file_is_served_again(aiohttp_client: Any, tmp_path: Path,
                                              fake_pypi: FakePyPI) -> None:
    dist = fake_pypi.add_wheel("stockade-steady", "1.0")
    client = await _pypi_client(aiohttp_client, tmp_path, fake_pypi)
    url = f"/pypi/files/stockade-steady/{dist.filename}"
    first = await client.get(url)
    assert await first.read() == dist.data
    again = await client.get(url)
    assert again.status == 200
    assert again.headers["X-Stockade-Cache"] == "hit"
