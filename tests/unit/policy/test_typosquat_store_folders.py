"""Which folder an index file is read from, and who builds a missing one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat import NameIndex, store
from stockade.policy.typosquat.loose import LooseIndex

NAMES = ("requests", "numpy", "python-dateutil", "beautifulsoup4", "pandas", "urllib3")


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every index built in this process, by kind."""
    built: list[str] = []
    for kind, cls in (("names", NameIndex), ("loose", LooseIndex)):
        def counting(self: Any, *args: Any, kind: str = kind, cls: Any = cls,
                     init: Any = cls.__init__, **kwargs: Any) -> None:
            built.append(kind)
            init(self, *args, **kwargs)
        monkeypatch.setattr(cls, "__init__", counting)
    yield built
    store._elsewhere.clear()  # a builder the test left unasked


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    cache, prebuilt = tmp_path / "cache", tmp_path / "prebuilt"
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(cache))
    monkeypatch.delenv("STOCKADE_INDEX_PREBUILT", raising=False)
    return cache, prebuilt


def test_a_missing_file_is_asked_of_the_builder_once_then_mapped(
        folders: tuple[Path, Path], builds: list[str]) -> None:
    cache, _ = folders
    asked: list[None] = []

    def builder() -> None:  # as a server's children do: write every missing file
        asked.append(None)
        store.write_file(cache, "names", Ecosystem.PYPI, NAMES)
        store.write_file(cache, "loose", Ecosystem.PYPI, NAMES)
    store.build_elsewhere(builder)
    builds.clear()
    index = store.load_or_build(Ecosystem.PYPI, NAMES)
    store.load_or_build_loose(Ecosystem.PYPI, NAMES)
    assert len(asked) == 1
    assert builds == ["names", "loose"]  # by the builder only: both mapped after it
    assert index.lookalike("reqeusts") is not None
    store.load_or_build(Ecosystem.NPM, ("express",))  # asked once: built here now
    assert len(asked) == 1
    assert builds[-1] == "names"


def test_without_a_cache_folder_the_builder_is_not_asked(
        monkeypatch: pytest.MonkeyPatch, builds: list[str]) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", "")
    monkeypatch.delenv("STOCKADE_INDEX_PREBUILT", raising=False)
    asked: list[None] = []
    store.build_elsewhere(lambda: asked.append(None))
    assert store.load_or_build(Ecosystem.PYPI, NAMES).lookalike("reqeusts") is not None
    assert not asked
    assert builds == ["names"]


def test_prebuilt_files_are_mapped_and_nothing_is_written(
        folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        builds: list[str]) -> None:
    cache, prebuilt = folders
    written = {store.write_file(prebuilt, kind, Ecosystem.PYPI, NAMES)
               for kind in ("names", "loose")}
    assert {store.found(p.name) for p in written} == {None}  # not named: not looked in
    monkeypatch.setenv("STOCKADE_INDEX_PREBUILT", str(prebuilt))
    assert {store.found(p.name) for p in written} == written
    builds.clear()
    index = store.load_or_build(Ecosystem.PYPI, NAMES)
    store.load_or_build_loose(Ecosystem.PYPI, NAMES)
    assert not builds
    assert not cache.exists()
    assert index.lookalike("reqeusts") is not None


def test_write_file_raises_where_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match="a-file"):
        store.write_file(blocker / "index", "names", Ecosystem.PYPI, NAMES)
    with pytest.raises(ValueError, match="kind"):
        store.write_file(tmp_path, "other", Ecosystem.PYPI, NAMES)
