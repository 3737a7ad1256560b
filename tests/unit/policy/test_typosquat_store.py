"""The name index kept in a file: read back, it decides as the one built."""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat import NameIndex, store
from stockade.policy.typosquat.loose import LooseIndex, Shapes
from stockade.policy.typosquat.packed import Lists, Strings, _Packed

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


def test_loose_index_file_written_once_then_mapped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = tuple(LISTS[E.NPM])
    built = LooseIndex(E.NPM, names)
    first = store.load_or_build_loose(E.NPM, names)
    (path,) = tmp_path.glob("loose-npm-*.packed")
    assert path.read_bytes() == store.dumps_loose(built)  # the same tables, packed alike
    written: list[Path] = []
    monkeypatch.setattr(store, "_write", lambda where, path, data: written.append(path))
    again = store.load_or_build_loose(E.NPM, names)
    assert written == []  # read from the file, not built and written
    assert again is not first
    # every big table read in place from the file mapped: no object per name
    for table in (again._names, again._ranks, again._one, again._ends, again._ratios,
                  again._anagrams, again._dropped):
        assert isinstance(table, _Packed) and isinstance(table._blob, mmap.mmap)
    for deep in (False, True):
        found = [again.match(n, deep=deep) for n in LOOSE_PROBES]
        assert found == [built.match(n, deep=deep) for n in LOOSE_PROBES]
        assert found == [first.match(n, deep=deep) for n in LOOSE_PROBES]
    assert any(found)
    assert list(tmp_path.glob("names-*")) == []  # the name index's files are apart


def _flipped(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0xFF  # inside a table: only the checksum tells
    return bytes(changed)


@pytest.mark.parametrize("damage", [
    lambda data: b"\x80garbage", lambda data: data[:len(data) // 2], lambda data: b"",
    lambda data: data[:40], _flipped, lambda data: data + b"\0" * 8],
    ids=["garbage", "truncated", "empty", "head only", "a byte changed", "grown"])
def test_a_damaged_loose_file_is_built_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            damage: Callable[[bytes], bytes]) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = tuple(LISTS[E.PYPI])
    store.load_or_build_loose(E.PYPI, names)
    (path,) = tmp_path.glob("loose-pypi-*.packed")
    good = path.read_bytes()
    path.write_bytes(damage(good))
    index = store.load_or_build_loose(E.PYPI, names)
    built = LooseIndex(E.PYPI, names)
    for probe in ("requests-toolz", "reqeusts", "numpy2", "pandas-x"):
        assert index.match(probe, deep=True) == built.match(probe, deep=True), probe
    assert path.read_bytes() == good  # written again, whole


def test_loose_index_in_a_folder_that_cannot_be_made(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path / "a-file" / "cache"))
    names = tuple(LISTS[E.NPM])
    index = store.load_or_build_loose(E.NPM, names)
    assert isinstance(index._one, Lists) and isinstance(index._one._blob, bytes)
    built = LooseIndex(E.NPM, names)
    for deep in (False, True):
        assert [index.match(n, deep=deep) for n in LOOSE_PROBES] \
            == [built.match(n, deep=deep) for n in LOOSE_PROBES]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_loose_index_without_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", "")
    monkeypatch.chdir(tmp_path)
    index = store.load_or_build_loose(E.PYPI, tuple(LISTS[E.PYPI]))
    assert index.match("requests-toolz", deep=True) == LooseIndex(
        E.PYPI, tuple(LISTS[E.PYPI])).match("requests-toolz", deep=True)
    assert isinstance(index._names, Strings) and isinstance(index._names._blob, bytes)
    assert list(tmp_path.iterdir()) == []


def test_a_loose_index_of_other_shapes_or_own_names_is_not_kept() -> None:
    names = tuple(LISTS[E.PYPI])
    with pytest.raises(TypeError, match="shapes"):
        store.dumps_loose(LooseIndex(E.PYPI, names, shapes=Shapes()))
    with pytest.raises(TypeError, match="shapes"):
        store.dumps_loose(LooseIndex(E.PYPI, names, listed={"requests"}))
    data = store.dumps_loose(LooseIndex(E.PYPI, names))
    with pytest.raises(ValueError, match="kind"):
        store.loads(data)  # a loose file is no name index file, nor the other way
    with pytest.raises(ValueError, match="kind"):
        store.loads_loose(store.dumps(NameIndex(E.PYPI, names)))


def test_the_key_is_every_part_with_a_newline_after_it() -> None:
    """The file names stay what they were: a changed key would rebuild every kept
    index once, and a key that left out a part would read a stale one."""
    import hashlib

    names, first = ("requests", "numpy", "naïve"), ("acme-lib",)
    digest = hashlib.sha256(store._detector_digest().encode())
    for part in (Ecosystem.PYPI.value, *first, "\0", *names):
        digest.update(part.encode("utf-8") + b"\n")
    assert store._key(Ecosystem.PYPI, names, first) == digest.hexdigest()[:32]
    assert store._key(Ecosystem.PYPI, names, ()) != store._key(Ecosystem.PYPI, names, first)
    assert store._key(Ecosystem.NPM, names, first) != store._key(Ecosystem.PYPI, names, first)
