"""``QuickLRU``: cachetools' LRU cache with a one-call ``get``, the same order kept."""

from __future__ import annotations

import pytest

from stockade.proxy.budget import BudgetedLRU, QuickLRU, unbounded


@pytest.mark.parametrize("quick", [True, False])
def test_a_hit_is_the_most_recent_and_a_miss_the_default(quick: bool) -> None:
    cache: QuickLRU[str, int] = QuickLRU(2)
    if not quick:  # (as where cachetools' own attributes are not found)
        cache._quick = None
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # now the most recent: "b" goes first
    assert cache.get("zz") is None
    assert cache.get("zz", 7) == 7
    cache["c"] = 3
    assert sorted(cache) == ["a", "c"]
    assert cache.get("b") is None


def test_the_quick_way_is_taken_with_this_cachetools() -> None:
    """(A cachetools release that renames what it reads turns it off, never wrong.)"""
    assert QuickLRU(1)._quick is not None
    budgeted: BudgetedLRU[str, bytes] = BudgetedLRU(10, len, unbounded(), "test")
    budgeted["k"] = b"abc"
    assert budgeted._quick is not None
    assert budgeted.get("k") == b"abc"
