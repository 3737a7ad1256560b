"""A built ``NameIndex`` kept in a file, so a process maps it instead of building it.

Owns the index file: its name (a digest of the names, the detector's source and the
interpreter, so any change to either builds anew), writing it atomically, and reading
it back. The big tables are packed (``packed``) and kept in the file as they are in
memory: a process maps the file read-only and looks names up in place, so the pages
are shared by every worker and no object is made per name (building the shipped
lists' indexes takes several seconds of CPU; mapping the file a few milliseconds and
checking its checksum some tens). The small tables are ``marshal``: plain str, int,
tuple, dict and set, no code, read only from the folder this process or another of
the same installation wrote. Any failure to read or write is not an error: the index
is built as before (in memory, its tables packed all the same).

The loose search's index (``LooseIndex``) is kept beside it, in ``marshal``, every
attribute as it is but its shapes (the ecosystem's own, named by the source).

The folder: ``STOCKADE_INDEX_CACHE`` if set (empty: never use a file), else
``$XDG_CACHE_HOME/stockade`` or ``~/.cache/stockade``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.metadata
import logging
import marshal
import mmap
import os
import struct
import sys
import tempfile
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.edits import EditIndex
from stockade.policy.typosquat.index import NameIndex
from stockade.policy.typosquat.loose import SHAPES, LooseIndex
from stockade.policy.typosquat.packed import Names, Ranks, Strings, _Packed
from stockade.policy.typosquat.slips import SlipIndex

logger = logging.getLogger(__name__)

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
_FORMAT = 2  # bump when the layout of the state below changes
# the file: magic, where the state (marshal) starts and its length, the CRC-32 of all
# after the head; the packed tables, then the state, which names where each table is
_HEAD = struct.Struct("=8sQQQ")
_MAGIC = b"STKNAMES"


def folder() -> Path | None:
    """Where index files are kept, or None when they are not to be."""
    configured = os.environ.get("STOCKADE_INDEX_CACHE")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stockade"


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
    for part in (ecosystem.value, *first, "\0", *names):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()[:32]


def _state(index: NameIndex, tables: list[bytes], at: int) -> dict[str, Any]:
    """``index``'s plain attributes, and where its packed tables are: each appended to
    ``tables``, the first at offset ``at`` in the file."""
    held = vars(index)
    expected = {"ecosystem", "_edits", "_slips", "_groups", *_INDEX, *_INDEX_TABLES}
    if set(held) != expected \
            or set(vars(index._edits)) != {*_EDITS, *_EDIT_TABLES, *_SHARED_EDITS, *_LAYERS} \
            or set(vars(index._slips)) != {*_SLIPS, *_SLIP_TABLES, *_SHARED_SLIPS, *_LAYERS} \
            or index._edits._base is not None:
        raise TypeError("NameIndex holds attributes the index file does not know")
    where: dict[str, int] = {}
    for owner, names in ((index, _INDEX_TABLES), (index._edits, _EDIT_TABLES),
                         (index._slips, _SLIP_TABLES)):
        for name in names:
            table = getattr(owner, name)
            if not isinstance(table, _TABLES[name]):
                raise TypeError(f"{name} is not packed")
            where[name] = at + sum(map(len, tables))
            tables.append(table.tobytes())
    return {
        "ecosystem": index.ecosystem.value,
        **{name: held[name] for name in _INDEX},
        "tables": where,
        "edits": {name: getattr(index._edits, name) for name in _EDITS},
        "slips": {name: getattr(index._slips, name) for name in _SLIPS},
        "groups": None if index._groups is None
        else _state(index._groups, tables, at),
    }


def _restore(state: dict[str, Any], buffer: bytes | mmap.mmap) -> NameIndex:
    index = NameIndex.__new__(NameIndex)
    index.ecosystem = Ecosystem(state["ecosystem"])
    for name in _INDEX:
        setattr(index, name, state[name])
    tables: dict[str, Any] = {name: _TABLES[name](buffer, at)
                              for name, at in state["tables"].items()}
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
        else _restore(state["groups"], buffer)
    return index


def dumps(index: NameIndex) -> bytes:
    """The file's bytes for ``index``."""
    tables: list[bytes] = []
    state = marshal.dumps(_state(index, tables, _HEAD.size))
    body = b"".join(tables) + state
    return _HEAD.pack(_MAGIC, _HEAD.size + len(body) - len(state), len(state),
                      zlib.crc32(body)) + body


def loads(data: bytes | mmap.mmap) -> NameIndex:
    """The index ``dumps`` wrote, its tables read in place from ``data`` (the file's
    bytes, or the file mapped)."""
    magic, at, size, _ = _HEAD.unpack_from(data)  # too short: struct.error, a ValueError
    if magic != _MAGIC or at + size != len(data):
        raise ValueError("not a name index file of this format")
    state = marshal.loads(data[at:at + size])  # noqa: S302 (our own file, plain data only)
    return _restore(state, data)


def _mapped(path: Path) -> mmap.mmap:
    """``path`` mapped read-only (its pages shared by every process mapping it), once
    its checksum is checked: read in chunks, which maps nothing in this process."""
    with path.open("rb") as file:
        head = file.read(_HEAD.size)
        if len(head) != _HEAD.size:
            raise ValueError("a name index file too short")
        crc, chunk = 0, bytearray(1 << 20)
        while got := file.readinto(chunk):
            crc = zlib.crc32(memoryview(chunk)[:got], crc)
        if _HEAD.unpack(head)[3] != crc:
            raise ValueError("a name index file that does not match its checksum")
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def load_or_build(ecosystem: Ecosystem, names: Iterable[str], *,
                  first: Iterable[str] = ()) -> NameIndex:
    """``NameIndex(ecosystem, names, first=first)``, read from its file when one was
    written for these names and this detector, else built (and its file written)."""
    names, first = tuple(names), tuple(first)
    where = folder()
    if where is None:
        return NameIndex(ecosystem, names, first=first)
    path = where / f"names-{ecosystem.value}-{_key(ecosystem, names, first)}.packed"
    try:
        return loads(_mapped(path))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, EOFError, TypeError, KeyError, struct.error) as exc:
        logger.warning("ignoring the name index file %s: %s", path, exc)
    index = NameIndex(ecosystem, names, first=first)
    _write(where, path, dumps(index))
    return index


def load_or_build_loose(ecosystem: Ecosystem, names: tuple[str, ...]) -> LooseIndex:
    """``LooseIndex(ecosystem, names)``, read from its file when one was written for
    these names and this detector, else built (and its file written): about a third
    of the CPU of building it at every start."""
    where = folder()
    if where is None:
        return LooseIndex(ecosystem, names)
    path = where / f"loose-{ecosystem.value}-{_key(ecosystem, names, ('loose',))}.marshal"
    try:
        with _paused_collection():
            return _loose_restore(marshal.loads(path.read_bytes()))  # noqa: S302
    except FileNotFoundError:
        pass
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("ignoring the loose index file %s: %s", path, exc)
    index = LooseIndex(ecosystem, names)
    try:
        data = marshal.dumps(_loose_state(index))
    except (ValueError, TypeError) as exc:
        logger.info("loose index not kept: %s", exc)  # an attribute marshal cannot write
        return index
    _write(where, path, data)
    return index


def _loose_state(index: LooseIndex) -> dict[str, Any]:
    """Every attribute of ``index`` as plain data: the ecosystem by its value, and its
    shapes left out (the ecosystem's own ``SHAPES``, whose source is in the key)."""
    if index.shapes != SHAPES[index.ecosystem]:
        raise TypeError("only an index of the ecosystem's own shapes is kept")
    state = dict(vars(index))
    state["ecosystem"] = index.ecosystem.value
    del state["shapes"]
    return state


def _loose_restore(state: dict[str, Any]) -> LooseIndex:
    index = LooseIndex.__new__(LooseIndex)
    vars(index).update(state)
    index.ecosystem = Ecosystem(state["ecosystem"])
    index.shapes = SHAPES[index.ecosystem]
    return index


@contextlib.contextmanager
def _paused_collection() -> Iterator[None]:
    """No cyclic collection while a file's hundreds of thousands of containers are
    made: each generation's pass would walk them again (a third of npm's load)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write(where: Path, path: Path, data: bytes) -> None:
    """Write ``path`` atomically and drop the ecosystem's older files (one name list
    in use at a time: the last one written)."""
    tmp: Path | None = None
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".names-", delete=False) as out:
            tmp = Path(out.name)
            out.write(data)
        os.replace(tmp, path)
        tmp = None
        prefix = path.name.rsplit("-", 1)[0]
        for old in where.glob(f"{prefix}-*"):  # an older format's too
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        logger.info("name index not kept in %s: %s", where, exc)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
