"""The name index kept in a file: read back, it decides as the one built."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat import NameIndex, store
from stockade.policy.typosquat.loose import LooseIndex

E = Ecosystem
LISTS = {
    E.PYPI: ["requests", "numpy", "python-dateutil", "beautifulsoup4", "matplotlib", "pyyaml",
             "django-rest-framework", "scikit-learn", "pandas", "urllib3"],
    E.NPM: ["lodash", "react", "@babel/core", "express", "puppeteer", "webpack-dev-server",
            "vue", "moment", "chalk", "commander"],
    E.MAVEN: ["org.apache.commons:commons-lang3", "com.google.guava:guava",
              "io.github.scribejava:scribejava-core", "junit:junit"],
}
PROBES = {
    E.PYPI: ["reqeusts", "nunpy", "python-dateutl", "beautifulsoup", "matplotlib-requests",
             "yaml", "py-yaml", "scikit_learn", "panads", "urlib3", "requests", "unrelated"],
    E.NPM: ["lodahs", "reakt", "@babel/cor", "babel-core", "expres", "pupeteer",
            "webpack-dev-servers", "vue", "momnet", "chalk", "zzz-unrelated"],
    E.MAVEN: ["org.apache.commons:commons-lang", "com.gooogle.guava:guava",
              "io.github.someone:scribejava-core", "junit:junit"],
}


@pytest.mark.parametrize("eco", list(Ecosystem))
def test_read_back_decides_as_built(eco: Ecosystem) -> None:
    built = NameIndex(eco, LISTS[eco], first=["acme-internal"])
    loaded = store.loads(store.dumps(built))
    for name in PROBES[eco]:
        assert loaded.lookalike(name) == built.lookalike(name), name
        assert (name in loaded) == (name in built)


def test_file_written_once_then_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    first = store.load_or_build(E.NPM, LISTS[E.NPM])
    files = list(tmp_path.glob("names-npm-*.packed"))
    assert len(files) == 1
    written: list[Path] = []
    monkeypatch.setattr(store, "_write", lambda where, path, data: written.append(path))
    again = store.load_or_build(E.NPM, LISTS[E.NPM])
    assert written == []  # read from the file, not built and written
    monkeypatch.undo()
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    assert again.lookalike("lodahs") == first.lookalike("lodahs")
    store.load_or_build(E.NPM, [*LISTS[E.NPM], "left-pad"])  # other names: another file
    assert [p.name for p in tmp_path.glob("names-npm-*.packed")] != [files[0].name]
    assert len(list(tmp_path.glob("names-npm-*.packed"))) == 1  # the older one dropped


def test_a_damaged_file_is_built_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    store.load_or_build(E.PYPI, LISTS[E.PYPI])
    (path,) = tmp_path.glob("names-pypi-*.packed")
    path.write_bytes(b"\x00garbage")
    index = store.load_or_build(E.PYPI, LISTS[E.PYPI])
    assert index.lookalike("reqeusts") is not None
    assert path.read_bytes() != b"\x00garbage"  # written again


def test_no_folder_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", "")
    monkeypatch.chdir(tmp_path)
    assert store.folder() is None
    assert store.load_or_build(E.PYPI, LISTS[E.PYPI]).lookalike("reqeusts") is not None
    assert list(tmp_path.iterdir()) == []


LOOSE_PROBES = ["lodash-utils", "reactt-x", "expressjs", "pupeteer-core", "left-pad"]


def test_loose_index_file_written_once_then_read(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = tuple(LISTS[E.NPM])
    built = LooseIndex(E.NPM, names)
    first = store.load_or_build_loose(E.NPM, names)
    (path,) = tmp_path.glob("loose-npm-*.marshal")
    written: list[Path] = []
    monkeypatch.setattr(store, "_write", lambda where, path, data: written.append(path))
    again = store.load_or_build_loose(E.NPM, names)
    assert written == []  # read from the file, not built and written
    assert again is not first
    for deep in (False, True):
        found = [again.match(n, deep=deep) for n in LOOSE_PROBES]
        assert found == [built.match(n, deep=deep) for n in LOOSE_PROBES]
        assert found == [first.match(n, deep=deep) for n in LOOSE_PROBES]
    assert any(found)
    path.write_bytes(b"\x80garbage")  # damaged: built anew, written again
    monkeypatch.undo()
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    assert store.load_or_build_loose(E.NPM, names).match("expressjs", deep=True) \
        == built.match("expressjs", deep=True)
    assert path.read_bytes() != b"\x80garbage"
    assert list(tmp_path.glob("names-*")) == []  # the name index's files are apart


def test_loose_index_without_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", "")
    monkeypatch.chdir(tmp_path)
    index = store.load_or_build_loose(E.PYPI, tuple(LISTS[E.PYPI]))
    assert index.match("requests-toolz", deep=True) == LooseIndex(
        E.PYPI, tuple(LISTS[E.PYPI])).match("requests-toolz", deep=True)
    assert list(tmp_path.iterdir()) == []
