"""One memory budget per worker process, shared by its in-memory caches.

Past the budget, the cache holding the most for its own bound gives back its least
recently used entries, whichever cache took the entry that went past it; an entry
larger than the budget is held by none of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stockade.proxy.budget import BudgetedLRU, MemoryBudget
from stockade.proxy.hotblobs import HotBlobs
from stockade.proxy.rendered import RenderedCache

KB = 1024


def _blob(folder: Path, n: int, size: int) -> tuple[str, Path, bytes]:
    body = bytes([n % 256]) * size
    path = folder / f"blob-{n}"
    path.write_bytes(body)
    return hashlib.sha256(body).hexdigest(), path, body


def test_a_cache_filling_the_budget_makes_the_fullest_one_shed(tmp_path: Path) -> None:
    budget = MemoryBudget(64 * KB)
    parsed: BudgetedLRU[str, bytes] = BudgetedLRU(32 * KB, len, budget, "parsed")
    blobs = HotBlobs(1024 * KB, 64 * KB, budget)
    for n in range(3):
        parsed[f"doc-{n}"] = bytes(10 * KB)
    held = []
    for n in range(5):  # 80 KB with the parsed documents: 16 past the budget
        sha, path, body = _blob(tmp_path, n, 10 * KB)
        blobs.hold(sha, path, body)
        held.append(sha)
    # the parsed documents hold the most for their bound (30 of 32 KB): their least
    # recently used went, and every blob stayed
    assert list(parsed) == ["doc-2"]
    assert all(blobs.get(sha) is not None for sha in held)
    assert budget.used == blobs.used_bytes + parsed.currsize <= budget.max_bytes
    assert budget.usage() == {"parsed": 10 * KB, "blobs": 50 * KB}


def test_each_cache_sheds_its_own_least_recently_used_first(tmp_path: Path) -> None:
    budget = MemoryBudget(40 * KB)
    blobs = HotBlobs(1024 * KB, 64 * KB, budget)
    shas = []
    for n in range(4):
        sha, path, body = _blob(tmp_path, n, 10 * KB)
        blobs.hold(sha, path, body)
        shas.append(sha)
    assert blobs.get(shas[0]) is not None  # used again: the second is now the oldest
    sha, path, body = _blob(tmp_path, 9, 10 * KB)
    blobs.hold(sha, path, body)
    assert blobs.get(shas[1]) is None
    assert all(blobs.get(s) is not None for s in (shas[0], shas[2], shas[3], sha))
    assert budget.used == 40 * KB


def test_an_entry_larger_than_the_budget_is_not_held(tmp_path: Path) -> None:
    budget = MemoryBudget(16 * KB)
    parsed: BudgetedLRU[str, bytes] = BudgetedLRU(1024 * KB, len, budget, "parsed")
    blobs = HotBlobs(1024 * KB, 1024 * KB, budget)
    parsed["small"] = bytes(4 * KB)
    parsed["large"] = bytes(17 * KB)
    sha, path, body = _blob(tmp_path, 1, 17 * KB)
    assert not blobs.takes(len(body))
    blobs.hold(sha, path, body)
    assert "large" not in parsed and blobs.get(sha) is None
    assert list(parsed) == ["small"]  # and nothing was shed for them
    assert budget.used == 4 * KB


def test_releasing_and_replacing_entries_keeps_the_count(tmp_path: Path) -> None:
    budget = MemoryBudget(1024 * KB)
    parsed: BudgetedLRU[str, bytes] = BudgetedLRU(1024 * KB, len, budget, "parsed")
    parsed["a"] = bytes(3 * KB)
    parsed["a"] = bytes(5 * KB)  # replaced: the old one's bytes released
    parsed["b"] = bytes(2 * KB)
    del parsed["b"]
    assert budget.used == 5 * KB
    parsed.clear()
    assert budget.used == 0


async def test_rendered_forms_share_the_budget_and_stay_on_disk(tmp_path: Path) -> None:
    budget = MemoryBudget(64 * KB)
    blobs = HotBlobs(1024 * KB, 64 * KB, budget)
    cache = RenderedCache(tmp_path / "rendered", budget=budget, memory_bytes=1024 * KB)
    await cache.open()
    try:
        page = await cache.get("page", bytes, 40 * KB, max_age_s=60, heavy=False)
        assert page.body is not None and page.memory_bytes > 40 * KB
        for n in range(4):  # 40 KB of blobs: past the budget with the page's forms
            blobs.hold(*_blob(tmp_path, n, 10 * KB))
        # the rendered forms hold the most for their bound: kept on disk only, and
        # served from there as before
        kept = cache.peek("page", max_age_s=60)
        assert kept is not None and kept.body is None and kept.gzipped is None
        assert kept.path.read_bytes() == bytes(40 * KB)
        assert budget.usage()["rendered"] == 0
        assert budget.used == blobs.used_bytes == 40 * KB
        huge = await cache.get("huge", bytes, 65 * KB, max_age_s=60, heavy=False)
        held = cache.peek("huge", max_age_s=60)
        assert held is not None and held.body is None  # larger than the budget
        assert huge.path.read_bytes() == bytes(65 * KB)
    finally:
        await cache.close()


@pytest.mark.parametrize("budget_bytes", [0, 1])
def test_a_budget_of_nothing_holds_nothing(tmp_path: Path, budget_bytes: int) -> None:
    budget = MemoryBudget(budget_bytes)
    blobs = HotBlobs(1024 * KB, 64 * KB, budget)
    sha, path, body = _blob(tmp_path, 1, 2 * KB)
    blobs.hold(sha, path, body)
    assert blobs.get(sha) is None and budget.used == 0
