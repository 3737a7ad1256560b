"""Read-only tables of names packed in one buffer, for the typosquat index's big tables.

Owns the packed form of a table keyed by name: a hash table of 64-bit slots (the key's
CRC-32 above, its entry's number below; linear probing, at most half full), each
entry's start and key end, and the keys and values in one blob. A look-up hashes the
key's UTF-8 bytes and compares the stored key on a hit, so answers are exact. A
byte a slot, eight bits of a one-bit filter by the hash's top three bits, ends most
look-ups of an absent key at its first test (a name's deletions are mostly absent). Nothing
is made per name when a table is opened: over a file mapped read-only, every process
that maps it shares its pages (a dict of str is ~100 bytes a name in each process).
The look-up loops run in C (``_probe``, over the same buffers) where that module was
built, and in Python where it was not: both answer the same entries.

Four kinds: ``Ranks`` (name -> rank), ``Strings`` (key -> one name), ``Names``
(key -> a name, or a tuple of them: the dict's ``str | tuple`` as it was built) and
``Lists`` (key -> a tuple of one name or more, in the order built).
Entries keep the order they were added in, so iteration is a dict's. Pure, but for
``checked_on_first_use``: a table read in place from a file checks the file's bytes
against the CRC-32 they were written with when it is first used, not when it is opened
(``Check``).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from mmap import mmap
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from stockade.policy.typosquat._probe import Probe

# magic, kind, entries, slots, blob length: the arrays follow (slots, each slot's
# filter byte, starts, key ends, ranks), then the blob
_HEAD = struct.Struct("=8sQQQQ")
_MAGIC = b"STKPACK2"
_RANKS, _STRINGS, _NAMES, _LISTS = 1, 2, 3, 4
_MEMO = 4096
_ONE, _MANY = 0, 1  # the byte after a key: one name follows, or several joined by NUL
_PROBE_ABI = 1  # what ``_probe.Probe``'s methods take and answer: a build of another is unused


def _native() -> ModuleType | None:
    """The C look-ups (``_probe``), or None where they were not built (no compiler when
    installed) or were built for another ABI (a stale build): the Python loops run."""
    try:
        from stockade.policy.typosquat import _probe
    except ImportError:
        return None
    return _probe if getattr(_probe, "ABI", None) == _PROBE_ABI else None


NATIVE = _native()  # a module, or None (tests set it to None to run the Python loops)

Key = str | bytes
V = TypeVar("V")


def _encoded(key: Key) -> bytes:
    return key if key.__class__ is bytes else key.encode("utf-8", "surrogatepass")  # type: ignore[union-attr]


def _pad(size: int) -> int:
    return -size % 8


class _Packed(Mapping[str, V], Generic[V]):
    """The look-up shared by the kinds, over ``buffer[offset:]`` (bytes, or a
    read-only ``mmap``)."""

    _KIND = 0
    __slots__ = ("_at", "_blob", "_check", "_count", "_ends", "_filter", "_memo", "_offset",
                 "_probe", "_ranks", "_size", "_slots", "_starts", "_width")
    _LAYOUT = ("_at", "_blob", "_count", "_ends", "_filter", "_offset", "_probe", "_ranks",
               "_size", "_slots", "_starts", "_width")  # what a table's bytes make
    _count: int
    _width: int
    _at: int

    def __init__(self, buffer: bytes | mmap, offset: int = 0) -> None:
        view = memoryview(buffer)
        if len(view) < offset + _HEAD.size:
            raise ValueError("packed table: truncated header")
        magic, kind, count, width, blob = _HEAD.unpack_from(view, offset)
        if magic != _MAGIC or kind != self._KIND or width < count or (count and not width):
            raise ValueError("packed table: not a table of this kind")
        at = offset + _HEAD.size
        sizes = (8 * width, width, 4 * (count + 1), 4 * count,
                 4 * count if kind == _RANKS else 0)
        arrays: list[memoryview] = []
        for size in sizes:
            arrays.append(view[at:at + size])
            at += size + _pad(size)
        if at + blob + _pad(blob) > len(view):
            raise ValueError("packed table: truncated")
        self._slots, self._filter = arrays[0].cast("Q"), arrays[1]
        self._starts, self._ends, self._ranks = (a.cast("I") for a in arrays[2:])
        self._count, self._width = count, width
        self._blob = buffer  # slices of bytes or mmap are bytes: compared and decoded
        self._at = at
        self._offset, self._size = offset, at + blob + _pad(blob) - offset
        # the keys found lately and their values: the popular names an edit or a slip
        # reaches are read again and again (bounded: emptied when full)
        self._memo: dict[Key, V] = {}
        self._check: Check | None = None
        # the C look-ups over the same buffers (None: the Python loops below)
        self._probe: Probe | None = None if NATIVE is None else NATIVE.Probe(
            self._slots, self._filter, self._starts, self._ends, buffer, at, width, count)

    @classmethod
    def pack(cls, items: Iterable[tuple[Key, V]]) -> bytes:
        """The table of ``items`` (unique keys), in their order."""
        blob = bytearray()
        starts, ends, ranks, hashes = array("I"), array("I"), array("I"), []
        for key, value in items:
            raw = _encoded(key)
            starts.append(len(blob))
            blob += raw
            ends.append(len(blob))
            hashes.append(zlib.crc32(raw))
            cls._put(blob, ranks, value)
        starts.append(len(blob))
        count = len(hashes)
        width = 2 * count + 1 if count else 0
        slots, filtered = array("Q", bytes(8 * width)), bytearray(width)
        for entry, hashed in enumerate(hashes):
            slot = hashed % width
            filtered[slot] |= 1 << (hashed >> 29)
            while slots[slot]:
                slot = slot + 1 if slot + 1 < width else 0
            slots[slot] = hashed << 32 | (entry + 1)
        parts = [_HEAD.pack(_MAGIC, cls._KIND, count, width, len(blob))]
        for part in (slots, filtered, starts, ends, ranks):
            raw = bytes(part)
            parts += [raw, bytes(_pad(len(raw)))]
        parts += [bytes(blob), bytes(_pad(len(blob)))]
        return b"".join(parts)

    @staticmethod
    def _put(blob: bytearray, ranks: array[int], value: V) -> None:
        raise NotImplementedError

    def _find(self, raw: bytes) -> int:
        """The entry of the key ``raw``, or -1 (``get`` and ``found`` hold it inline:
        a call is a tenth of a look-up's time)."""
        if self._probe is not None:
            return int(self._probe.find(raw))
        width = self._width
        if not width:
            return -1
        hashed = zlib.crc32(raw)
        slot, slots = hashed % width, self._slots
        if not self._filter[slot] >> (hashed >> 29) & 1:
            return -1
        while held := slots[slot]:
            if held >> 32 == hashed:
                entry: int = (held & 0xFFFFFFFF) - 1
                if self._blob[self._at + self._starts[entry]:
                              self._at + self._ends[entry]] == raw:
                    return entry
            slot = slot + 1 if slot + 1 < width else 0
        return -1

    def _value(self, entry: int) -> V:
        raise NotImplementedError

    def _key(self, entry: int) -> str:
        at = self._at
        return bytes(self._blob[at + self._starts[entry]:at + self._ends[entry]]).decode(
            "utf-8", "surrogatepass")

    @overload  # type: ignore[override]
    def get(self, key: Key) -> V | None: ...
    @overload
    def get(self, key: Key, default: V) -> V: ...

    def get(self, key: Key, default: V | None = None) -> V | None:
        # ``_find`` inline: a table of names is read several times a name checked
        found = self._memo.get(key)
        if found is not None:
            return found
        probe = self._probe
        if probe is not None:
            number = probe.find(key)
            return default if number < 0 else self._remember(key, number)
        width = self._width
        if not width:
            return default
        if key.__class__ is bytes:
            raw: bytes = key
        else:
            try:
                raw = key.encode()  # type: ignore[union-attr]
            except UnicodeEncodeError:
                raw = key.encode("utf-8", "surrogatepass")  # type: ignore[union-attr]
        hashed = zlib.crc32(raw)
        slot, slots = hashed % width, self._slots
        if not self._filter[slot] >> (hashed >> 29) & 1:
            return default  # no key here has this home slot and these top bits
        while held := slots[slot]:
            if held >> 32 == hashed:
                entry: int = (held & 0xFFFFFFFF) - 1
                if self._blob[self._at + self._starts[entry]:
                              self._at + self._ends[entry]] == raw:
                    return self._remember(key, entry)
            slot = slot + 1 if slot + 1 < width else 0
        return default

    def _remember(self, key: Key, entry: int) -> V:
        """The value of ``entry``, found for ``key``, kept in the memo (``get``)."""
        found = self._value(entry)
        if len(self._memo) >= _MEMO:
            self._memo.clear()
        self._memo[key] = found
        return found

    def found(self, keys: Iterable[str]) -> list[V]:
        """The values of those of ``keys`` the table holds: ``get`` of each, in one
        loop (a name's dozen one-letter deletions, most of them held by none)."""
        if self._probe is not None:
            return [self._value(entry) for entry in self._probe.found(keys)]
        width = self._width
        out: list[V] = []
        if not width:
            return out
        slots, starts, ends, blob, at, crc32, filtered = self._slots, self._starts, \
            self._ends, self._blob, self._at, zlib.crc32, self._filter
        for key in keys:
            try:
                raw = key.encode()
            except UnicodeEncodeError:
                raw = key.encode("utf-8", "surrogatepass")
            hashed = crc32(raw)
            slot = hashed % width
            if not filtered[slot] >> (hashed >> 29) & 1:
                continue
            while held := slots[slot]:
                if held >> 32 == hashed:
                    entry: int = (held & 0xFFFFFFFF) - 1
                    if blob[at + starts[entry]:at + ends[entry]] == raw:
                        out.append(self._value(entry))
                        break
                slot = slot + 1 if slot + 1 < width else 0
        return out

    def found_deletions(self, word: str) -> list[V]:
        """``found(forms.deletions(word))``, in the order of the deletions: ``word``
        less each letter, then ``word``. An ASCII word's deletions are made as bytes
        (what a look-up hashes) and each once, a run of one letter deleted at its first
        (every deletion within it leaves the same), with no set to build."""
        probe = self._probe
        if probe is not None:
            entries = probe.deletions(word)
            if entries is not None:
                return [self._value(entry) for entry in entries]
        width = self._width
        out: list[V] = []
        if not width:
            return out
        raw = word.encode("utf-8", "surrogatepass")
        if len(raw) != len(word):  # not ASCII: a byte is not a letter
            return self.found({word[:i] + word[i + 1:] for i in range(len(word))} | {word})
        slots, starts, ends, blob, at, crc32, filtered = self._slots, self._starts, \
            self._ends, self._blob, self._at, zlib.crc32, self._filter
        size, last = len(raw), -1
        for i in range(size + 1):
            if i < size:
                letter = raw[i]
                if letter == last:
                    continue  # the run's deletion, made at its first letter
                last = letter
                key = raw[:i] + raw[i + 1:]
            else:
                key = raw
            hashed = crc32(key)
            slot = hashed % width
            if not filtered[slot] >> (hashed >> 29) & 1:
                continue
            while held := slots[slot]:
                if held >> 32 == hashed:
                    entry: int = (held & 0xFFFFFFFF) - 1
                    if blob[at + starts[entry]:at + ends[entry]] == key:
                        out.append(self._value(entry))
                        break
                slot = slot + 1 if slot + 1 < width else 0
        return out

    def found_with(self, keys: Iterable[str]) -> list[tuple[str, V]]:
        """Each of ``keys`` the table holds, with its value, in their order: ``found``
        where the caller needs to know which keys were found (a name's slips)."""
        if self._probe is not None:
            return [(key, self._value(entry)) for key, entry in self._probe.found_with(keys)]
        width = self._width
        out: list[tuple[str, V]] = []
        if not width:
            return out
        slots, starts, ends, blob, at, crc32, filtered = self._slots, self._starts, \
            self._ends, self._blob, self._at, zlib.crc32, self._filter
        for key in keys:
            try:
                raw = key.encode()
            except UnicodeEncodeError:
                raw = key.encode("utf-8", "surrogatepass")
            hashed = crc32(raw)
            slot = hashed % width
            if not filtered[slot] >> (hashed >> 29) & 1:
                continue
            while held := slots[slot]:
                if held >> 32 == hashed:
                    entry: int = (held & 0xFFFFFFFF) - 1
                    if blob[at + starts[entry]:at + ends[entry]] == raw:
                        out.append((key, self._value(entry)))
                        break
                slot = slot + 1 if slot + 1 < width else 0
        return out

    def __getitem__(self, key: Key) -> V:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str | bytes):
            return False
        return self._find(_encoded(key)) >= 0

    def __iter__(self) -> Iterator[str]:
        return map(self._key, range(self._count))

    def __len__(self) -> int:
        return self._count

    def tobytes(self) -> bytes:
        """The table as ``pack`` wrote it."""
        return bytes(memoryview(self._blob)[self._offset:self._offset + self._size])


class Ranks(_Packed[int]):
    """Name -> rank."""

    _KIND = _RANKS
    __slots__ = ()

    @staticmethod
    def _put(blob: bytearray, ranks: array[int], value: int) -> None:
        ranks.append(value)

    def _value(self, entry: int) -> int:
        return int(self._ranks[entry])

    def below(self, limit: int, shortest: int = 0) -> list[tuple[str, int]]:
        """The names ranked under ``limit``, of ``shortest`` letters or more, with
        their ranks, in the table's order (one pass over the ranks: only those names
        are decoded)."""
        ranks = self._ranks
        return [(key, rank) for entry in range(self._count)
                if (rank := ranks[entry]) < limit
                and len(key := self._key(entry)) >= shortest]


class Strings(_Packed[str]):
    """Key -> one name."""

    _KIND = _STRINGS
    __slots__ = ()

    @staticmethod
    def _put(blob: bytearray, ranks: array[int], value: str) -> None:
        blob += value.encode("utf-8", "surrogatepass")

    def _value(self, entry: int) -> str:
        at = self._at
        return bytes(self._blob[at + self._ends[entry]:at + self._starts[entry + 1]]).decode(
            "utf-8", "surrogatepass")


class Names(_Packed[str | tuple[str, ...]]):
    """Key -> a name, or a tuple of names (NUL is in no name a table holds)."""

    _KIND = _NAMES
    __slots__ = ()

    @staticmethod
    def _put(blob: bytearray, ranks: array[int], value: str | tuple[str, ...]) -> None:
        if isinstance(value, str):
            blob.append(_ONE)
            blob += value.encode("utf-8", "surrogatepass")
        else:
            if any("\0" in name for name in value):
                raise ValueError("a name with NUL in it")
            blob.append(_MANY)
            blob += "\0".join(value).encode("utf-8", "surrogatepass")

    def _value(self, entry: int) -> str | tuple[str, ...]:
        at = self._at
        raw = bytes(self._blob[at + self._ends[entry]:at + self._starts[entry + 1]])
        text = raw[1:].decode("utf-8", "surrogatepass")
        return text if raw[0] == _ONE else tuple(text.split("\0"))


class Lists(_Packed[tuple[str, ...]]):
    """Key -> a tuple of one name or more, in their order (NUL is in no name a table
    holds): a list of a dict of lists, decoded when its key is looked up."""

    _KIND = _LISTS
    __slots__ = ()

    @staticmethod
    def _put(blob: bytearray, ranks: array[int], value: tuple[str, ...]) -> None:
        if not value or any("\0" in name for name in value):
            raise ValueError("an empty list, or a name with NUL in it")
        blob += "\0".join(value).encode("utf-8", "surrogatepass")

    def _value(self, entry: int) -> tuple[str, ...]:
        at = self._at
        return tuple(bytes(self._blob[at + self._ends[entry]:at + self._starts[entry + 1]])
                     .decode("utf-8", "surrogatepass").split("\0"))


class Layered(Mapping[str, V], Generic[V]):
    """``{**base, **own}`` without copying ``base``: ``own`` (small) looked up first."""

    __slots__ = ("_base", "_len", "_own")

    def __init__(self, own: Mapping[str, V], base: Mapping[str, V]) -> None:
        self._own, self._base = own, base
        self._len = len(base) + sum(1 for key in own if key not in base)

    @overload  # type: ignore[override]
    def get(self, key: str) -> V | None: ...
    @overload
    def get(self, key: str, default: V) -> V: ...

    def get(self, key: str, default: V | None = None) -> V | None:
        found = self._own.get(key)
        if found is None:
            found = self._base.get(key)
        return default if found is None else found

    def __getitem__(self, key: str) -> V:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._own or key in self._base

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from (key for key in self._own if key not in self._base)

    def __len__(self) -> int:
        return self._len


# A table's state in ``Check.seen``, a byte each, shared by the processes forked after
# the file was opened: any of them that checked it spares the others the reading.
_UNSEEN, _GOOD = 0, 1
_CHUNK = 1 << 20


class Source:
    """The bytes a table was read from, to check them: a file's descriptor (read with
    ``pread``, which maps nothing: a process is charged in its RSS for every page of a
    mapping it reads), or the buffer itself. Closes the descriptor when dropped."""

    __slots__ = ("_buffer", "_fd")

    def __init__(self, fd: int | None = None, buffer: bytes | None = None) -> None:
        self._fd, self._buffer = fd, buffer

    def crc(self, start: int, size: int) -> int:
        """The CRC-32 of ``size`` bytes from ``start``."""
        if self._buffer is not None:
            return zlib.crc32(memoryview(self._buffer)[start:start + size])
        if self._fd is None:
            raise OSError("the file is closed")
        crc, end = 0, start + size
        while start < end:
            chunk = os.pread(self._fd, min(_CHUNK, end - start), start)
            if not chunk:
                raise OSError("the file is shorter than its tables")
            crc = zlib.crc32(chunk, crc)
            start += len(chunk)
        return crc

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class Check:
    """What a table read in place is checked against on its first use: the CRC-32 its
    bytes were written with, where its bytes are (``Source``), its byte in ``seen``,
    and ``damaged``, which gives the table as it should be (built anew) when the
    bytes do not match."""

    __slots__ = ("crc", "damaged", "lock", "seen", "slot", "source")

    def __init__(self, source: Source, crc: int, seen: bytearray | mmap, slot: int,
                 damaged: Callable[[], _Packed[Any]]) -> None:
        self.source, self.crc, self.seen, self.slot = source, crc, seen, slot
        self.damaged = damaged
        self.lock = threading.Lock()


class _Unchecked:
    """Mixed into a table read in place whose bytes are not checked yet: every read
    of it checks them first, once, and the table becomes its own kind again (no
    test left on the look-up's path). Bytes that do not match are never read: the
    table takes the content of the one ``Check.damaged`` builds."""

    __slots__ = ()

    def _settle(self) -> None:
        table: _Packed[Any] = self  # type: ignore[assignment]
        check = table._check
        if check is None:  # another thread settled it while this one waited
            return
        with check.lock:
            if table._check is None:
                return
            try:
                good = check.seen[check.slot] == _GOOD \
                    or check.source.crc(table._offset, table._size) == check.crc
            except OSError:
                good = False
            if good:
                check.seen[check.slot] = _GOOD
            else:
                fresh = check.damaged()
                for name in _Packed._LAYOUT:
                    setattr(table, name, getattr(fresh, name))
                table._memo = {}
            # its kind again (the mro is: its own, _Unchecked, its kind), before its
            # check is dropped: a thread that finds no check finds the kind's methods
            table.__class__ = type(table).__mro__[2]
            table._check = None

    def get(self, *args: Any) -> Any:
        self._settle()
        return self.get(*args)

    def found(self, keys: Iterable[str]) -> Any:
        self._settle()
        return self.found(keys)

    def found_deletions(self, word: str) -> Any:
        self._settle()
        return self.found_deletions(word)

    def found_with(self, keys: Iterable[str]) -> Any:
        self._settle()
        return self.found_with(keys)

    def __getitem__(self, key: Key) -> Any:
        self._settle()
        return self[key]

    def __contains__(self, key: object) -> bool:
        self._settle()
        return key in self

    def __iter__(self) -> Iterator[str]:
        self._settle()
        return iter(self)

    def __len__(self) -> int:
        self._settle()
        return len(self)

    def tobytes(self) -> bytes:
        self._settle()
        return self.tobytes()

    def _find(self, raw: bytes) -> int:
        self._settle()
        return self._find(raw)

    def _value(self, entry: int) -> Any:
        self._settle()
        return self._value(entry)

    def _key(self, entry: int) -> str:
        self._settle()
        return self._key(entry)


class _UncheckedRanks(_Unchecked, Ranks):
    __slots__ = ()

    def below(self, limit: int, shortest: int = 0) -> list[tuple[str, int]]:
        self._settle()  # its ranks are read before any key: check them first
        return self.below(limit, shortest)


class _UncheckedStrings(_Unchecked, Strings):
    __slots__ = ()


class _UncheckedNames(_Unchecked, Names):
    __slots__ = ()


class _UncheckedLists(_Unchecked, Lists):
    __slots__ = ()


_UNCHECKED: dict[type[_Packed[Any]], type[_Packed[Any]]] = {
    Ranks: _UncheckedRanks, Strings: _UncheckedStrings, Names: _UncheckedNames,
    Lists: _UncheckedLists}


def checked_on_first_use(table: _Packed[V], check: Check) -> _Packed[V]:
    """``table``, its bytes checked against ``check`` when it is first read."""
    if type(table) not in _UNCHECKED:
        raise TypeError(f"not a packed table: {type(table).__name__}")
    table._check = check
    table.__class__ = _UNCHECKED[type(table)]
    return table


def unchecked(table: _Packed[Any]) -> bool:
    """Whether ``table``'s bytes are still to be checked."""
    return isinstance(table, _Unchecked)
