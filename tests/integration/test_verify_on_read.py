"""Verify on read without blocking the loop: a small blob is hashed in a thread, once,
then trusted while its file is unchanged; a change on disk is still caught, even one
that puts the old size and mtime back."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.storage import verify
from testbed.fakes.pypi_upstream import FakePyPI
from tests.integration.outage_support import ProxyFor, blobs

# Blobs held in memory are hashed as they are read into it; these tests are of the
# read verifier, which checks the stored files the memory does not hold.
NOT_IN_MEMORY = {"memory_blobs": {"max_bytes": 0}}


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads each file hash ran in."""
    threads: list[str] = []
    real = verify.hash_file

    def counting(path: Path) -> str:
        threads.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(verify, "hash_file", counting)
    return threads


async def _fetch(client: TestClient[Any, Any], path: str) -> bytes:
    resp = await client.get(path)
    assert resp.status == 200
    body: bytes = await resp.read()
    return body


async def test_a_blob_is_hashed_once_off_the_loop_then_trusted_until_it_changes(
        fake_pypi: FakePyPI, proxy_for: ProxyFor, tmp_path: Path, hashed: list[str]) -> None:
    dist = fake_pypi.add_wheel("demo", "1.0")
    client = await proxy_for(pypi=[{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
                             server=NOT_IN_MEMORY)
    path = f"/pypi/files/demo/{dist.filename}"
    assert await _fetch(client, path) == dist.data  # fetched and stored
    for _ in range(4):
        assert await _fetch(client, path) == dist.data
    assert len(hashed) == 1  # the first warm hit hashed it; the others trusted it
    assert threading.main_thread().name not in hashed
    # Other bytes of the same size, with the old mtime put back: ctime still moved.
    [blob] = blobs(tmp_path)
    st = blob.stat()
    blob.write_bytes(dist.data[:-1] + bytes([dist.data[-1] ^ 1]))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert await _fetch(client, path) == dist.data
    assert sum(1 for _, p in fake_pypi.requests if p.endswith(dist.filename)) == 2
    [blob] = blobs(tmp_path)
    assert blob.read_bytes() == dist.data
    text = await (await client.get("/metrics")).text()
    assert 'stockade_blob_verifications_total{result="mismatch",trigger="read"} 1.0' in text


async def test_no_trust_window_hashes_every_read(
        fake_pypi: FakePyPI, proxy_for: ProxyFor, hashed: list[str]) -> None:
    dist = fake_pypi.add_wheel("demo", "1.0")
    client = await proxy_for(pypi=[{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
                             storage={"verify_on_read_trust_s": 0}, server=NOT_IN_MEMORY)
    path = f"/pypi/files/demo/{dist.filename}"
    for _ in range(4):
        assert await _fetch(client, path) == dist.data
    assert len(hashed) == 3  # every warm hit


async def test_the_scheduled_rehash_removes_a_changed_large_blob_and_it_is_fetched_again(
        fake_pypi: FakePyPI, proxy_for: ProxyFor, tmp_path: Path) -> None:
    """Above verify_on_read_max_bytes (here 0: every blob) nothing is hashed on read;
    the schedule finds the change, and the next request fetches the file again."""
    dist = fake_pypi.add_wheel("demo", "1.0")
    client = await proxy_for(pypi=[{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
                             storage={"verify_on_read_max_bytes": 0,
                                      "rehash_interval_s": 0.05})
    path = f"/pypi/files/demo/{dist.filename}"
    assert await _fetch(client, path) == dist.data
    [blob] = blobs(tmp_path)
    blob.write_bytes(dist.data[:-1] + bytes([dist.data[-1] ^ 1]))
    deadline = asyncio.get_running_loop().time() + 60
    while blob.exists():
        assert asyncio.get_running_loop().time() < deadline, "the blob was never re-hashed"
        await asyncio.sleep(0.02)
    text = await (await client.get("/metrics")).text()
    assert 'stockade_blob_verifications_total{result="mismatch",trigger="schedule"} 1.0' \
        in text
    assert await _fetch(client, path) == dist.data
    assert sum(1 for _, p in fake_pypi.requests if p.endswith(dist.filename)) == 2
