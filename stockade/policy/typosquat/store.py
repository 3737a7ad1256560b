"""A built ``NameIndex`` kept in a file, so a process maps it instead of building it.

Owns the index file: its name (a digest of the names, the detector's source and the
interpreter, so any change to either builds anew), writing it atomically, and reading
it back. The big tables are packed (``packed``) and kept in the file as they are in
memory: a process maps the file read-only and looks names up in place, so the pages
are shared by every worker and no object is made per name (building the shipped
lists' indexes takes several seconds of CPU; mapping the file a few milliseconds). Each
packed table's bytes are checked against the CRC-32 they were written with when the
table is first used (``packed.Check``), not when the file is opened: reading every
table whole took a quarter of a second of every start. A table that does not match is
never read: the index is built anew then (in memory, and its file written again), and
the table answers from the one built. The small tables are ``marshal``: plain str, int,
tuple, dict and set, no code, read only from the folder this process or another of
the same installation wrote. Any failure to read or write is not an error: the index
is built as before (in memory, its tables packed all the same).

The loose search's index (``LooseIndex``) is kept beside it in a file of its own of
the same layout: its tables packed and mapped, its few plain attributes ``marshal``.
Its name holds the shapes that shaped it (the ecosystem's own ``SHAPES``; an index of
other shapes is not kept).

The folder: ``STOCKADE_INDEX_CACHE`` if set (empty: never use a file), else
``$XDG_CACHE_HOME/stockade`` or ``~/.cache/stockade``. A file is looked for first in
``STOCKADE_INDEX_PREBUILT`` where that is set: a read-only folder of files written
ahead (``write_file``, ``stockade index build``; a container image's), never written
nor pruned here; an index built because neither folder had its file is kept in the
cache folder. Who builds the files before a server starts is ``proxy.indexes``'
concern; this module builds in the calling process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import marshal
import mmap
import os
import struct
import sys
import tempfile
import threading
import unicodedata
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.edits import EditIndex
from stockade.policy.typosquat.index import NameIndex
from stockade.policy.typosquat.loose import SHAPES, LooseIndex
from stockade.policy.typosquat.packed import (
    Check,
    Lists,
    Names,
    Ranks,
    Source,
    Strings,
    _Packed,
    checked_on_first_use,
)
from stockade.policy.typosquat.slips import SlipIndex

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The attributes each part holds; the owner's tables its parts share are linked back on
# load. A new attribute that is not listed here fails the round trip (and its test).
_INDEX = ("_cores", "_digitless", "_stripped", "_combo_parts", "_artifacts")
_EDITS = ("_top", "_top_names")
_SLIPS = ("_vocabulary", "_word_slips")
# the packed tables (``packed``), kept in the file as they are in memory and mapped
_TABLES: dict[str, type[_Packed[Any]]] = {
    "names": Ranks, "_skeletons": Strings, "_folded": Strings,
    "_deletes": Names, "_swaps": Names, "_slips": Names}
_INDEX_TABLES = ("names", "_skeletons", "_folded")
_EDIT_TABLES = ("_deletes", "_swaps")
_SLIP_TABLES = ("_slips",)
_SHARED_EDITS = ("_ecosystem", "_names", "_skeletons")
_SHARED_SLIPS = ("_ecosystem", "_names")
_LAYERS = ("_base", "_hidden")  # set on a layered index only, never kept
_EDITS_DERIVED = ("kept",)  # the last look-up's answer (``EditIndex.neighbours``): never kept
_INDEX_DERIVED = ("last",)  # the last name compared (``NameIndex.last``): never kept
# Index files kept per kind and ecosystem, the last used (see ``_write``).
_KEPT = 3
# bump when the layout of the state below changes (5: the edit deletions hold the
# short names beyond SHORT_EDIT_RANK too, the loose tier's one-edit neighbours)
_FORMAT = 5
# the file: magic, where the state (marshal) starts and its length, the state's CRC-32;
# the packed tables, then the state, which says where each table is, its length and
# its CRC-32 (checked on the table's first use): every byte after the head is in one
_HEAD = struct.Struct("=8sQQQ")
_MAGIC = b"STKNAMES"
_LOOSE_MAGIC = b"STKLOOSE"
# the loose index's packed tables, and its plain attributes (``_listed`` is empty in
# a kept index: the shipped lists' own)
_LOOSE_TABLES: dict[str, type[_Packed[Any]]] = {
    "_names": Strings, "_ranks": Ranks, "_one": Lists, "_ends": Lists, "_ratios": Lists,
    "_anagrams": Strings, "_dropped": Strings}
_LOOSE_PLAIN = ("ecosystem", "shapes", "_listed", "_longest")
# made from the tables as they are used: never kept
_LOOSE_DERIVED = ("_bounds", "_contained", "_joined", "_shared", "_marked", "_versioned")


def folder() -> Path | None:
    """Where index files are kept, or None when they are not to be."""
    configured = os.environ.get("STOCKADE_INDEX_CACHE")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stockade"


def prebuilt() -> Path | None:
    """The read-only folder of index files written ahead, if one is set."""
    configured = os.environ.get("STOCKADE_INDEX_PREBUILT")
    return Path(configured) if configured else None


def names_file(ecosystem: Ecosystem, names: tuple[str, ...],
               first: tuple[str, ...] = ()) -> str:
    """The name of the name index file for these names (and this detector)."""
    return f"names-{ecosystem.value}-{_key(ecosystem, names, first)}.packed"


def loose_file(ecosystem: Ecosystem, names: tuple[str, ...]) -> str:
    """The name of the loose index file for these names, the ecosystem's shapes and
    this detector."""
    shapes = repr(SHAPES[ecosystem])
    return f"loose-{ecosystem.value}-{_key(ecosystem, names, ('loose', shapes))}.packed"


def found(name: str) -> Path | None:
    """Where the index file ``name`` is: in the prebuilt folder, else the cache
    folder; None in neither."""
    for where in (prebuilt(), folder()):
        if where is not None and (where / name).is_file():
            return where / name
    return None


def _places(name: str) -> list[Path]:
    return [where / name for where in (prebuilt(), folder()) if where is not None]


_elsewhere: list[Callable[[], None]] = []  # who writes missing files, until asked once


def build_elsewhere(build: Callable[[], None]) -> None:
    """Have ``build`` called, once, where an index file is first found missing: it
    writes the missing files in the cache folder from other processes (a server's,
    ``proxy.indexes``), and the index is then mapped from its file rather than built
    in this process. Without it (``stockade check``), this process builds."""
    _elsewhere[:] = [build]


def _built_elsewhere() -> bool:
    """Whether ``build_elsewhere``'s builder was asked now (at most once)."""
    if not _elsewhere or folder() is None:
        return False
    _elsewhere.pop()()
    return True


def _from_places(name: str, load: Callable[[mmap.mmap, Source], T]) -> T | None:
    """The index file ``name`` loaded from the first folder that holds a good one."""
    for path in _places(name):
        try:
            return load(*_mapped(path))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, EOFError, TypeError, KeyError, struct.error) as exc:
            logger.warning("ignoring the index file %s: %s", path, exc)
    return None


def write_file(where: Path, kind: str, ecosystem: Ecosystem, names: tuple[str, ...]) -> Path:
    """Build the index of ``kind`` (``names`` or ``loose``) for ``names`` and write its
    file in ``where``; its path.

    Raises:
        OSError: the file could not be written.
        ValueError: ``kind`` is neither.
    """
    if kind == "names":
        path, data = where / names_file(ecosystem, names), dumps(NameIndex(ecosystem, names))
    elif kind == "loose":
        path = where / loose_file(ecosystem, names)
        data = dumps_loose(LooseIndex(ecosystem, names))
    else:
        raise ValueError(f"no index of kind {kind!r}")
    _write_or_raise(where, path, data)
    return path


@functools.cache
def _detector_digest() -> str:
    """What the index depends on besides its names: the matcher's source, the Unicode
    and confusables data that fold names, and the interpreter reading the file."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in sorted([*here.glob("*.py"), here.parent / "names.py"]):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    try:
        homoglyphs = importlib.metadata.version("confusable-homoglyphs")
    except importlib.metadata.PackageNotFoundError:
        homoglyphs = "?"
    digest.update(f"{_FORMAT} {sys.byteorder} {sys.version} {marshal.version} "
                  f"{unicodedata.unidata_version} "
                  f"{homoglyphs}".encode())
    return digest.hexdigest()


def _key(ecosystem: Ecosystem, names: tuple[str, ...], first: tuple[str, ...]) -> str:
    digest = hashlib.sha256(_detector_digest().encode())
    # every part and a newline after it, hashed as one string: the same key as part by
    # part, without a call per name at every start
    digest.update(("\n".join((ecosystem.value, *first, "\0")) + "\n")
                  .encode("utf-8", "surrogatepass"))
    digest.update(_joined(names))
    return digest.hexdigest()[:32]


_last_joined: list[tuple[tuple[str, ...], bytes]] = []  # the names last joined, joined
_last_lock = threading.Lock()


def forget_joined() -> None:
    """Let go of the names last joined (``_joined``) and their bytes."""
    with _last_lock:
        _last_joined.clear()


def _joined(names: tuple[str, ...]) -> bytes:
    """``names``, each followed by a newline, encoded. The strong and the loose index
    of an ecosystem are keyed by the same shipped names: joined once, not twice (the
    npm list's join takes a few milliseconds of every start)."""
    with _last_lock:
        if _last_joined and _last_joined[0][0] is names:
            return _last_joined[0][1]
    joined = ("\n".join(names) + "\n").encode("utf-8", "surrogatepass") if names else b""
    with _last_lock:
        _last_joined[:] = [(names, joined)]
    return joined


def _state(index: NameIndex, tables: list[bytes], at: int) -> dict[str, Any]:
    """``index``'s plain attributes, and where its packed tables are: each appended to
    ``tables``, the first at offset ``at`` in the file."""
    held = vars(index)
    expected = {"ecosystem", "_edits", "_slips", "_groups", *_INDEX, *_INDEX_TABLES,
                *_INDEX_DERIVED}
    if set(held) != expected \
            or set(vars(index._edits)) != {*_EDITS, *_EDIT_TABLES, *_SHARED_EDITS, *_LAYERS,
                                          *_EDITS_DERIVED} \
            or set(vars(index._slips)) != {*_SLIPS, *_SLIP_TABLES, *_SHARED_SLIPS, *_LAYERS} \
            or index._edits._base is not None:
        raise TypeError("NameIndex holds attributes the index file does not know")
    where: dict[str, tuple[int, int, int]] = {}
    for owner, names in ((index, _INDEX_TABLES), (index._edits, _EDIT_TABLES),
                         (index._slips, _SLIP_TABLES)):
        for name in names:
            table = getattr(owner, name)
            if not isinstance(table, _TABLES[name]):
                raise TypeError(f"{name} is not packed")
            raw = table.tobytes()
            where[name] = (at + sum(map(len, tables)), len(raw), zlib.crc32(raw))
            tables.append(raw)
    return {
        "ecosystem": index.ecosystem.value,
        **{name: held[name] for name in _INDEX},
        "tables": where,
        "edits": {name: getattr(index._edits, name) for name in _EDITS},
        "slips": {name: getattr(index._slips, name) for name in _SLIPS},
        "groups": None if index._groups is None
        else _state(index._groups, tables, at),
    }


def _restore(state: dict[str, Any], tables: dict[str, Any]) -> NameIndex:
    """The index of ``state``, its packed ``tables`` (by name) read already."""
    index = NameIndex.__new__(NameIndex)
    index.ecosystem = Ecosystem(state["ecosystem"])
    index.last = ("", "", None)
    for name in _INDEX:
        setattr(index, name, state[name])
    if set(tables) - {"groups"} != set(_TABLES):
        raise ValueError("an index file without its tables")
    for name in _INDEX_TABLES:
        setattr(index, name, tables[name])
    edits = EditIndex(index.ecosystem, index.names, index._skeletons)
    for name in _EDITS:
        setattr(edits, name, state["edits"][name])
    edits._deletes, edits._swaps = tables["_deletes"], tables["_swaps"]
    slips = SlipIndex(index.ecosystem, index.names)
    for name in _SLIPS:
        setattr(slips, name, state["slips"][name])
    slips._slips = tables["_slips"]
    index._edits, index._slips = edits, slips
    index._groups = None if state["groups"] is None \
        else _restore(state["groups"], tables["groups"])
    return index


def _table_of(index: NameIndex, place: tuple[str, ...]) -> _Packed[Any]:
    """The table at ``place`` (``("groups", "_deletes")``) in ``index``."""
    *groups, name = place
    for _ in groups:
        if index._groups is None:
            raise ValueError("an index without groups")
        index = index._groups
    owner = index._edits if name in _EDIT_TABLES \
        else index._slips if name in _SLIP_TABLES else index
    table: _Packed[Any] = getattr(owner, name)
    return table


def dumps(index: NameIndex) -> bytes:
    """The file's bytes for ``index``."""
    tables: list[bytes] = []
    state = _state(index, tables, _HEAD.size)
    return _file(_MAGIC, tables, state)


def loads(data: bytes | mmap.mmap, source: Source | None = None,
          rebuild: Callable[[], NameIndex] | None = None) -> NameIndex:
    """The index ``dumps`` wrote, its tables read in place from ``data`` (the file's
    bytes, or the file mapped: then ``source`` reads the file to check each table on
    its first use, and a table that does not match answers from ``rebuild()``'s; with
    no ``rebuild``, such a table raises ValueError)."""
    state = _read_state(data, _MAGIC)

    def count(part: dict[str, Any]) -> int:
        return len(part["tables"]) + (0 if part["groups"] is None else count(part["groups"]))

    def read(part: dict[str, Any], at: tuple[str, ...]) -> dict[str, Any]:
        tables: dict[str, Any] = {
            name: opened.table(_TABLES[name], where, _located(built, (*at, name)))
            for name, where in part["tables"].items()}
        if part["groups"] is not None:
            tables["groups"] = read(part["groups"], (*at, "groups"))
        return tables

    opened = _Opened(data, source, count(state))
    built = _once(rebuild or _no_rebuild)
    index = _restore(state, read(state, ()))
    opened.covered()
    return index


def _located(built: Callable[[], NameIndex],
             place: tuple[str, ...]) -> Callable[[], _Packed[Any]]:
    return lambda: _table_of(built(), place)


def _no_rebuild() -> Any:
    raise ValueError("an index table that does not match its checksum")


def _once(build: Callable[[], T]) -> Callable[[], T]:
    """``build``, called once however many of the file's tables ask for it."""
    lock, done = threading.Lock(), list[T]()

    def once() -> T:
        with lock:
            if not done:
                done.append(build())
            return done[0]
    return once


class _Opened:
    """One index file's bytes as its tables read them: each table read in place and
    checked on its first use (``packed.Check``), a byte each in ``seen``, shared by
    the processes forked after it was opened."""

    def __init__(self, data: bytes | mmap.mmap, source: Source | None, count: int) -> None:
        self.data = data
        if source is None:
            if isinstance(data, mmap.mmap):
                raise TypeError("a mapped file's tables are checked from the file")
            source = Source(buffer=data)
        self.source = source
        # anonymous and shared: a table one worker found good is good in every worker
        self.seen: bytearray | mmap.mmap = mmap.mmap(-1, max(count, 1)) \
            if isinstance(data, mmap.mmap) else bytearray(count)
        self.spans: list[tuple[int, int]] = []
        self._end = _HEAD.unpack_from(data)[1]

    def table(self, kind: type[_Packed[Any]], where: Any,
              damaged: Callable[[], _Packed[Any]]) -> _Packed[Any]:
        at, size, crc = where
        table = kind(self.data, at)
        if table._size != size:
            raise ValueError("an index table of another length than written")
        self.spans.append((at, size))
        return checked_on_first_use(
            table, Check(self.source, crc, self.seen, len(self.spans) - 1, damaged))

    def covered(self) -> None:
        """Every byte between the head and the state is in one table: each checked."""
        at = _HEAD.size
        for start, size in sorted(self.spans):
            if start != at:
                raise ValueError("an index file with bytes in no table")
            at += size
        if at != self._end:
            raise ValueError("an index file with bytes in no table")


def _read_state(data: bytes | mmap.mmap, magic: bytes) -> dict[str, Any]:
    """The plain state of a file ``_file`` wrote with ``magic``, once its checksum is
    checked."""
    found, at, size, crc = _HEAD.unpack_from(data)  # too short: struct.error, a ValueError
    if found != magic or at + size != len(data) or at < _HEAD.size:
        raise ValueError("not an index file of this kind and format")
    plain = data[at:at + size]
    if zlib.crc32(plain) != crc:
        raise ValueError("an index file that does not match its checksum")
    state = marshal.loads(plain)  # noqa: S302 (our own file, plain data only)
    if not isinstance(state, dict):
        raise ValueError("an index file without its state")
    return state


def _file(magic: bytes, tables: list[bytes], state: dict[str, Any]) -> bytes:
    """A file's bytes: its head, the packed ``tables`` (the first at ``_HEAD.size``,
    as ``state`` says where each is), then ``state``."""
    plain = marshal.dumps(state)
    body = b"".join(tables) + plain
    return _HEAD.pack(magic, _HEAD.size + len(body) - len(plain), len(plain),
                      zlib.crc32(plain)) + body


def _mapped(path: Path) -> tuple[mmap.mmap, Source]:
    """``path`` mapped read-only (its pages shared by every process mapping it), and
    the file kept open to check each table on its first use: read with ``pread``,
    which maps nothing in this process.

    Read and mapped for random access, so that the file is cached a page at a time
    (``_uncached``): a process is charged in its RSS for every page of a cached block
    it maps, and the page cache groups a file read or written in sequence in blocks of
    up to 2 MiB, where a look-up reads a few bytes here and there (mapping a byte of
    such a block costs 2 MiB of RSS, a byte of a page-cached file 64 KiB around it)."""
    with path.open("rb") as file:
        with contextlib.suppress(OSError):  # its last use, for ``_write``'s pruning
            os.utime(file.fileno())
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        if os.fstat(file.fileno()).st_size < _HEAD.size:
            raise ValueError("an index file too short")
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(mmap, "MADV_RANDOM"):
            mapped.madvise(mmap.MADV_RANDOM)  # a page not cached: read alone
        return mapped, Source(fd=os.dup(file.fileno()))


def _last_used(path: Path) -> float:
    """When ``path`` was last mapped or written (0: gone meanwhile)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _uncached(fileno: int) -> None:
    """The file written out and dropped from the page cache, where writing it left it
    in large blocks: ``_mapped`` reads it back a page at a time."""
    if hasattr(os, "posix_fadvise"):
        os.fdatasync(fileno)
        os.posix_fadvise(fileno, 0, 0, os.POSIX_FADV_DONTNEED)


def load_or_build(ecosystem: Ecosystem, names: Iterable[str], *,
                  first: Iterable[str] = (),
                  again: Callable[[], tuple[str, ...]] | None = None) -> NameIndex:
    """``NameIndex(ecosystem, names, first=first)``, read from its file when one was
    written for these names and this detector, else built (and its file written).
    ``again`` gives the names anew, where a table found damaged must be built: the
    index mapped then does not hold ``names`` for the life of the process."""
    names, first = tuple(names), tuple(first)
    where = folder()
    if where is None and prebuilt() is None:
        return NameIndex(ecosystem, names, first=first)
    name = names_file(ecosystem, names, first)
    return _mapped_or_built(name, "name", loads,
                            _name_builder(ecosystem, _names_anew(names, again), first,
                                          where, name))


def _names_anew(names: tuple[str, ...],
                again: Callable[[], tuple[str, ...]] | None) -> Callable[[], tuple[str, ...]]:
    if again is not None:
        return again
    return lambda: names


def _name_builder(ecosystem: Ecosystem, names: Callable[[], tuple[str, ...]],
                  first: tuple[str, ...], where: Path | None,
                  name: str) -> Callable[[], NameIndex]:
    def build() -> NameIndex:
        index = NameIndex(ecosystem, names(), first=first)
        if where is not None:
            _write(where, where / name, dumps(index))
        return index

    return build


def load_or_build_loose(ecosystem: Ecosystem, names: tuple[str, ...], *,
                        again: Callable[[], tuple[str, ...]] | None = None) -> LooseIndex:
    """``LooseIndex(ecosystem, names)``, mapped from its file when one was written for
    these names, these shapes and this detector, else built (and its file written;
    ``again`` as ``load_or_build`` takes it)."""
    where = folder()
    if where is None and prebuilt() is None:
        return LooseIndex(ecosystem, names)
    name = loose_file(ecosystem, names)
    return _mapped_or_built(name, "loose", loads_loose,
                            _loose_builder(ecosystem, _names_anew(names, again), where, name))


def _loose_builder(ecosystem: Ecosystem, names: Callable[[], tuple[str, ...]],
                   where: Path | None, name: str) -> Callable[[], LooseIndex]:
    def rebuild() -> LooseIndex:
        index = LooseIndex(ecosystem, names())
        if where is None:
            return index
        try:
            data = dumps_loose(index)
        except TypeError as exc:
            logger.info("loose index not kept: %s", exc)
            return index
        _write(where, where / name, data)
        return index

    return rebuild


def _mapped_or_built(name: str, kind: str,
                     loader: Callable[[mmap.mmap, Source, Callable[[], T]], T],
                     build: Callable[[], T]) -> T:
    """The ``kind`` index file ``name`` mapped and loaded (``loader``) from the first
    place that has it (read again once another process has built it meanwhile), else
    ``build()``; a table found damaged at first use is answered from ``build()``."""
    def damaged() -> T:
        logger.warning("the %s index file %s does not match its checksum: building "
                       "the index anew", kind, name)
        return build()

    def load(data: mmap.mmap, source: Source) -> T:
        return loader(data, source, damaged)

    found = _from_places(name, load)
    if found is None and _built_elsewhere():
        found = _from_places(name, load)
    return build() if found is None else found


def dumps_loose(index: LooseIndex) -> bytes:
    """The loose index file's bytes for ``index``: one of the ecosystem's own shapes
    and no names of its own to leave alone (the shipped lists')."""
    if set(vars(index)) != {*_LOOSE_PLAIN, *_LOOSE_TABLES, *_LOOSE_DERIVED}:
        raise TypeError("LooseIndex holds attributes the index file does not know")
    if index.shapes != SHAPES[index.ecosystem] or index._listed:
        raise TypeError("only an index of the ecosystem's own shapes and lists is kept")
    tables: list[bytes] = []
    where: dict[str, tuple[int, int, int]] = {}
    for name, kind in _LOOSE_TABLES.items():
        table = getattr(index, name)
        if not isinstance(table, kind):
            raise TypeError(f"{name} is not packed")
        raw = table.tobytes()
        where[name] = (_HEAD.size + sum(map(len, tables)), len(raw), zlib.crc32(raw))
        tables.append(raw)
    return _file(_LOOSE_MAGIC, tables, {
        "ecosystem": index.ecosystem.value, "shapes": repr(index.shapes),
        "_longest": index._longest, "tables": where})


def loads_loose(data: bytes | mmap.mmap, source: Source | None = None,
                rebuild: Callable[[], LooseIndex] | None = None) -> LooseIndex:
    """The loose index ``dumps_loose`` wrote, its tables read in place from ``data``
    and checked on their first use as ``loads`` says."""
    state = _read_state(data, _LOOSE_MAGIC)
    index = LooseIndex.__new__(LooseIndex)
    index.ecosystem = Ecosystem(state["ecosystem"])
    index.shapes = SHAPES[index.ecosystem]
    if state["shapes"] != repr(index.shapes):
        raise ValueError("a loose index file of other shapes")
    index._listed = ()
    index._longest = int(state["_longest"])
    index._bounds, index._contained, index._joined = {}, None, None
    index._shared = None
    index._marked = index._versioned = None
    if set(state["tables"]) != set(_LOOSE_TABLES):
        raise ValueError("a loose index file without its tables")
    opened = _Opened(data, source, len(_LOOSE_TABLES))
    built = _once(rebuild or _no_rebuild)
    for name, where in state["tables"].items():
        def damaged(name: str = name) -> _Packed[Any]:
            table: _Packed[Any] = getattr(built(), name)
            return table
        setattr(index, name, opened.table(_LOOSE_TABLES[name], where, damaged))
    opened.covered()
    return index


def _write(where: Path, path: Path, data: bytes) -> None:
    """Write ``path`` atomically and drop the ecosystem's files of this kind beyond
    the ``_KEPT`` last used. Servers of one host sharing the folder may use other lists
    or another version (an upgrade rolled out beside the old one): each start of one
    dropping the other's file made the other build its index again at every start."""
    try:
        _write_or_raise(where, path, data)
    except OSError as exc:
        logger.info("name index not kept in %s: %s", where, exc)


def _write_or_raise(where: Path, path: Path, data: bytes) -> None:
    """``_write``, raising OSError where the file could not be written."""
    tmp: Path | None = None
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".names-", delete=False) as out:
            tmp = Path(out.name)
            out.write(data)
            out.flush()
            _uncached(out.fileno())
        os.replace(tmp, path)
        tmp = None
        prefix = path.name.rsplit("-", 1)[0]
        others = [old for old in where.glob(f"{prefix}-*") if old != path]  # an older
        # format's too
        for old in sorted(others, key=_last_used, reverse=True)[_KEPT - 1:]:
            old.unlink(missing_ok=True)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
