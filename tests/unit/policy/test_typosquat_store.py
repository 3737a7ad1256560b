"""The name index kept in a file: read back, it decides as the one built."""

from __future__ import annotations

import marshal
import mmap
import os
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat import NameIndex, packed, store
from stockade.policy.typosquat.loose import LooseIndex, Shapes
from stockade.policy.typosquat.packed import (
    Lists,
    Ranks,
    Source,
    Strings,
    _Packed,
    unchecked,
)

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
    assert len(list(tmp_path.glob("names-npm-*.packed"))) == 2  # the first one kept


def test_files_kept_are_the_last_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers on one host with other lists (or versions) each keep their file: a
    start of one does not make the other build its index again. Beyond ``_KEPT``, the
    least recently used go."""
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    lists = [[*LISTS[E.PYPI], f"extra-{n}"] for n in range(store._KEPT + 1)]
    for names in lists[:store._KEPT]:
        store.load_or_build(E.PYPI, names)
    files = sorted(tmp_path.glob("names-pypi-*.packed"))
    assert len(files) == store._KEPT
    for n, path in enumerate(files):
        os.utime(path, (1000 + n, 1000 + n))  # all used long ago
    store.load_or_build(E.PYPI, lists[0])  # read (see below): and so the last used
    (first,) = (path for path in tmp_path.glob("names-pypi-*.packed")
                if path.stat().st_mtime > 2000)
    written: list[Path] = []
    real_write = store._write
    monkeypatch.setattr(store, "_write", lambda where, path, data: (
        written.append(path), real_write(where, path, data)))
    store.load_or_build(E.PYPI, lists[0])
    assert written == []  # read, not built
    store.load_or_build(E.PYPI, lists[store._KEPT])  # one more: the least used goes
    kept = set(tmp_path.glob("names-pypi-*.packed"))
    assert len(kept) == store._KEPT
    assert first in kept


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


def _spans(path: Path, magic: bytes) -> dict[str, tuple[int, int]]:
    """Where each top-level table of an index file lies: name -> (start, length)."""
    state = store._read_state(path.read_bytes(), magic)
    return {name: (at, size) for name, (at, size, _) in state["tables"].items()}


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _blob(table: Any) -> object:
    blob: object = table._blob
    return blob


def _tables(index: NameIndex) -> list[Any]:
    return [index.names, index._skeletons, index._folded, index._edits._deletes,
            index._edits._swaps, index._slips._slips]


def test_tables_are_checked_on_first_use_not_when_the_file_is_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    built = store.load_or_build(E.PYPI, LISTS[E.PYPI])
    loaded = store.load_or_build(E.PYPI, LISTS[E.PYPI])
    assert all(unchecked(table) for table in _tables(loaded))  # nothing read whole yet
    for name in PROBES[E.PYPI]:
        assert loaded.lookalike(name) == built.lookalike(name), name
    assert not any(unchecked(table) for table in _tables(loaded))
    assert type(loaded.names) is Ranks  # checked: its own kind again, nothing in the way
    assert dict(loaded.names.items()) == dict(built.names.items())


def test_a_table_found_damaged_at_its_first_use_answers_as_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    store.load_or_build(E.PYPI, LISTS[E.PYPI])
    (path,) = tmp_path.glob("names-pypi-*.packed")
    good = path.read_bytes()
    at, size = _spans(path, store._MAGIC)["_deletes"]
    _flip(path, at + size - 16)  # in the table's keys: only its checksum tells
    loaded = store.load_or_build(E.PYPI, LISTS[E.PYPI])
    assert path.read_bytes() != good  # opened as it is: not read whole at start
    deletes: Any = loaded._edits._deletes
    assert isinstance(_blob(deletes), mmap.mmap)
    built = NameIndex(E.PYPI, LISTS[E.PYPI])
    with caplog.at_level("WARNING"):
        for name in PROBES[E.PYPI]:
            assert loaded.lookalike(name) == built.lookalike(name), name
    assert "does not match its checksum" in caplog.text
    # the damaged table answers from the index built anew, whose file is written again
    assert dict(deletes.items()) == dict(built._edits._deletes.items())
    assert isinstance(_blob(deletes), bytes)
    assert path.read_bytes() == good
    assert isinstance(loaded.names._blob, mmap.mmap)  # the others still read in place


def test_a_damaged_loose_table_answers_as_built(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = tuple(LISTS[E.NPM])
    store.load_or_build_loose(E.NPM, names)
    (path,) = tmp_path.glob("loose-npm-*.packed")
    good = path.read_bytes()
    for table, (at, size) in _spans(path, store._LOOSE_MAGIC).items():
        _flip(path, at + size - 9)
        loaded = store.load_or_build_loose(E.NPM, names)
        built = LooseIndex(E.NPM, names)
        for deep in (False, True):
            assert [loaded.match(n, deep=deep) for n in LOOSE_PROBES] \
                == [built.match(n, deep=deep) for n in LOOSE_PROBES], table
        assert dict(getattr(loaded, table).items()) == dict(getattr(built, table).items())
        assert path.read_bytes() == good, table


def test_a_damaged_rank_table_is_checked_before_its_names_below_a_rank_are_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``below`` reads the ranks before any key: a damaged rank never picks a name."""
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = tuple(LISTS[E.NPM])
    store.load_or_build_loose(E.NPM, names)
    (path,) = tmp_path.glob("loose-npm-*.packed")
    at, _size = _spans(path, store._LOOSE_MAGIC)["_ranks"]
    data = bytearray(path.read_bytes())
    _magic, _kind, count, width, _blob_size = packed._HEAD.unpack_from(data, at)
    ranks_at = at + packed._HEAD.size
    for part in (8 * width, width, 4 * (count + 1), 4 * count):  # slots .. key ends
        ranks_at += part + packed._pad(part)
    data[ranks_at:ranks_at + 4 * count] = bytes(4 * count)  # every rank made 0
    path.write_bytes(bytes(data))
    loaded: Any = store.load_or_build_loose(E.NPM, names)
    assert unchecked(loaded._ranks)
    built: Any = LooseIndex(E.NPM, names)
    assert loaded._ranks.below(5) == built._ranks.below(5)  # the five first, not all
    assert not unchecked(loaded._ranks)


def test_without_a_way_to_build_anew_a_damaged_table_raises() -> None:
    data = bytearray(store.dumps(NameIndex(E.NPM, LISTS[E.NPM])))
    loaded = store.loads(bytes(data))
    assert loaded.lookalike("lodahs") is not None
    at, size, _ = store._read_state(bytes(data), store._MAGIC)["tables"]["names"]
    data[at + size - 9] ^= 0xFF
    damaged = store.loads(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        damaged.lookalike("lodahs")


@pytest.mark.parametrize("damage", ["state", "a table's length", "bytes in no table"])
def test_a_damaged_state_is_found_when_the_file_is_opened(damage: str) -> None:
    data = store.dumps(NameIndex(E.PYPI, LISTS[E.PYPI]))
    head = store._HEAD.unpack_from(data)
    if damage == "state":
        changed = bytearray(data)
        changed[-3] ^= 0xFF
        data = bytes(changed)
    else:
        state = store._read_state(data, store._MAGIC)
        at, size, crc = state["tables"]["_folded"]
        state["tables"]["_folded"] = (at, size + 8, crc) if damage == "a table's length" \
            else (at + 8, size, crc)
        plain = marshal.dumps(state)
        data = store._HEAD.pack(head[0], head[1], len(plain), zlib.crc32(plain)) \
            + data[store._HEAD.size:head[1]] + plain
    with pytest.raises(ValueError, match=r"index|table"):
        store.loads(data)


def test_a_table_checked_in_one_process_is_not_read_again_in_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor opens the files and forks the workers: a table one of them found
    good is good in each."""
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    store.load_or_build(E.NPM, LISTS[E.NPM])
    loaded = store.load_or_build(E.NPM, LISTS[E.NPM])
    names: Any = loaded.names
    check = names._check
    assert check is not None and check.seen[check.slot] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads about
        pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0 if "lodash" in loaded.names else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert check.seen[check.slot] == 1
    read: list[int] = []

    def crc(*args: object) -> int:
        read.append(1)
        return 0
    monkeypatch.setattr(Source, "crc", crc)
    assert "lodash" in loaded.names and read == []


def test_threads_reading_a_table_first_at_once_all_get_its_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    built = store.load_or_build(E.NPM, LISTS[E.NPM])
    expected = {name: built.names.get(name) for name in [*LISTS[E.NPM], "left-pad"]}
    for _ in range(5):
        loaded = store.load_or_build(E.NPM, LISTS[E.NPM])
        assert unchecked(loaded.names)
        start = threading.Barrier(8)
        answers: list[dict[str, int | None]] = []

        def read(table: Any = loaded.names, start: threading.Barrier = start,
                 answers: list[dict[str, int | None]] = answers) -> None:
            start.wait()
            answers.append({name: table.get(name) for name in expected})
        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [expected] * 8
        assert not unchecked(loaded.names)


def test_a_damaged_table_is_built_from_the_names_given_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapped index holds a way to read its names again, not the names: a table
    found damaged is built from what ``again`` gives."""
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    asked: list[int] = []

    def again() -> tuple[str, ...]:
        asked.append(1)
        return tuple(LISTS[E.PYPI])

    store.load_or_build(E.PYPI, LISTS[E.PYPI])
    (path,) = tmp_path.glob("names-pypi-*.packed")
    at, size = _spans(path, store._MAGIC)["_deletes"]
    _flip(path, at + size - 16)
    loaded = store.load_or_build(E.PYPI, LISTS[E.PYPI], again=again)
    assert asked == []  # mapped: the names are not asked for
    built = NameIndex(E.PYPI, LISTS[E.PYPI])
    assert [loaded.lookalike(n) for n in PROBES[E.PYPI]] == \
        [built.lookalike(n) for n in PROBES[E.PYPI]]
    assert asked == [1]  # the damaged table's first use built the index anew
