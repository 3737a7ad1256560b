"""A server holds the shipped lists' indexes, packed, not the 140,000 names they were
made of (10 MiB of strings in every process)."""

from __future__ import annotations

import gc
import inspect
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.policy.rules import typosquat
from stockade.policy.rules.typosquat import TyposquatRule, popular
from stockade.policy.typosquat import summaries

# each test builds the shipped lists' indexes into an empty folder (a first start)
pytestmark = pytest.mark.timeout(600)

@pytest.fixture
def kept_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    monkeypatch.delenv("STOCKADE_INDEX_PREBUILT", raising=False)
    return tmp_path


def _held_by_lists(run: Callable[[], object]) -> int:
    """Bytes still held, after ``run()``, that the shipped lists' reading allocated."""
    tracemalloc.start(1)
    try:
        run()
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    where = inspect.getsourcefile(popular.__wrapped__)
    assert where is not None
    lines = range(popular.__wrapped__.__code__.co_firstlineno,
                  popular.__wrapped__.__code__.co_firstlineno + 12)
    return sum(t.size for t in snapshot.traces
               if t.traceback[0].filename == where and t.traceback[0].lineno in lines)


def test_a_prepared_rule_holds_no_list_of_names(kept_files: Path) -> None:
    TyposquatRule().prepare()  # builds and writes the files (a first start)
    for cached in (typosquat._shipped_index, typosquat._index, typosquat._loose, popular):
        cached.cache_clear()
    rule = TyposquatRule()
    held = _held_by_lists(rule.prepare)  # maps them (any later start)
    assert held < 100_000  # the lists' strings took some 10 MiB
    assert popular.cache_info().currsize == 0
    # and it decides as ever
    verdict = rule.evaluate(*_ref("reqeusts"))
    assert verdict is not None and "did you mean" in verdict.reason


def test_the_targets_summary_is_read_by_its_rank(kept_files: Path) -> None:
    rule = TyposquatRule()
    rule.prepare()
    for eco in (Ecosystem.PYPI, Ecosystem.NPM):
        listed = summaries.shipped(eco)
        names = popular(eco)
        sample = [*names[:200], *names[-200:], *names[::997]]
        assert any(listed.get(n) for n in sample)
        for name in sample:
            assert rule._summary_print(eco, name) == listed.get(name, 0), name
        assert rule._summary_print(eco, "no-such-listed-name-at-all") == 0


def _ref(name: str) -> tuple[PackageRef, Facts]:
    return PackageRef(Ecosystem.PYPI, name, None), Facts()
