"""The local copies in front of object storage, in a folder worker processes share:
the bound holds for the folder, and the copies used last are the ones kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from stockade.storage import hotcache
from stockade.storage.hotcache import HotCache


async def _keep(cache: HotCache, root: Path, data: bytes) -> str:
    """What the S3 store does with a verified blob: install, account, reconcile."""
    sha256 = hashlib.sha256(data).hexdigest()
    spool = root / f"{sha256}.part"
    spool.write_bytes(data)
    cache.install(spool, sha256, len(data))
    cache.installed(sha256, len(data))
    await cache.reconcile()
    return sha256


def _on_disk(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (root / "hot").rglob("*") if p.is_file()}


async def test_the_bound_holds_for_the_folder_two_processes_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hotcache, "RESCAN_S", 0.0)
    monkeypatch.setattr(hotcache, "RESCAN_SHARE", float("inf"))  # read at every commit
    limit = 10 * 1000
    first, second = HotCache(tmp_path, limit), HotCache(tmp_path, limit)
    first.load()
    second.load()
    kept = []
    for n in range(30):
        cache = (first, second)[n % 2]
        kept.append(await _keep(cache, tmp_path, bytes([n]) * 1000))
        assert sum(_on_disk(tmp_path).values()) <= limit, n  # up to twice before
    assert set(_on_disk(tmp_path)) == set(kept[-10:])
    assert first.total_bytes <= limit and second.total_bytes <= limit


async def test_a_copy_this_process_used_outlives_newer_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reading orders the copies by the later of their install time and this
    process's own last use of them."""
    monkeypatch.setattr(hotcache, "RESCAN_S", 0.0)
    monkeypatch.setattr(hotcache, "RESCAN_SHARE", float("inf"))  # read at every install
    cache = HotCache(tmp_path, 3 * 1000)
    cache.load()
    old = await _keep(cache, tmp_path, b"o" * 1000)
    first = await _keep(cache, tmp_path, b"a" * 1000)
    await _keep(cache, tmp_path, b"b" * 1000)
    assert cache.get(old) is not None  # used now: the file's mtime says otherwise
    other = HotCache(tmp_path, None)  # another worker installs a copy
    await _keep(other, tmp_path, b"d" * 1000)
    await cache.reconcile()  # four copies under a bound of three: one goes
    assert old in _on_disk(tmp_path)
    assert first not in _on_disk(tmp_path)


async def test_a_use_is_written_on_the_file_for_the_other_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hotcache, "TOUCH_EVERY_S", 0.0)
    cache = HotCache(tmp_path, None)
    cache.load()
    sha256 = await _keep(cache, tmp_path, b"u" * 1000)
    found = cache.get(sha256)
    assert found is not None
    os.utime(found[0], (1_000_000_000, 1_000_000_000))  # installed long ago
    assert cache.get(sha256) is not None
    assert found[0].stat().st_mtime > 1_000_000_000
