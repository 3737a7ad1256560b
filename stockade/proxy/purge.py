"""Purging one package (or one version) from the cache, in every worker process.

Owns what a purge removes and how the other processes learn of it. A purge of a
name removes the cached metadata documents that name it (index pages,
packuments, maven-metadata.xml, per-version documents, remembered 404s, and the
rendered copies made from them) and the stored files (blobs) of its artifacts,
every version's or one version's; the next request fetches them again from the
upstream. It keeps the artifact records (which file stockade admitted under
which name, with its digests): the ``republished`` rule compares what an
upstream serves later with them, and a purge must not let a file swapped
behind its name pass as new. A blob another package's record still points at
(the same bytes) is kept.

Documents live on in memory too, in each worker: the metadata cache's LRU and
the rendered documents. A purge increments a counter, the first 8 bytes of a
generation file under storage, written in place under a lock; each process maps
that file (shared, read-only) and compares the counter before each metadata
look-up and each warm answer (every rendered document is made from one) and,
when it changed, drops every in-memory document (re-read from disk, or fetched
again where purged). Reading the mapping is a memory read: the ``stat`` per
request it replaces cost a warm 22 KB request about 5% of its time. The file's
stamp is still compared at most every ``stat_every_s`` (a file replaced rather
than written: restored, or by an older release, which replaced it per purge),
and on every check where the file cannot be mapped (not there yet, storage that
cannot be written). Blobs need nothing of the kind: ``hotblobs`` checks the file
on every hit, and a removed file is a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize
from stockade.storage.protocol import BlobStore
from stockade.storage.records import RecordStore
from stockade.storage.refs import RefStore

logger = logging.getLogger(__name__)

GENERATION_FILE = "purge-generation"


@dataclass(slots=True)
class PurgeResult:
    """What one purge removed."""

    ecosystem: Ecosystem
    name: str
    version: str | None
    documents: list[str] = field(default_factory=list)  # the upstream URLs
    files: list[dict[str, Any]] = field(default_factory=list)
    blobs_removed: int = 0
    bytes_removed: int = 0

    def summary(self) -> str:
        """One line: what was removed."""
        what = self.name if self.version is None else f"{self.name} {self.version}"
        return (f"cache purged of {self.ecosystem.value} {what}: {len(self.documents)} "
                f"metadata documents, {self.blobs_removed} files ({self.bytes_removed} bytes)")

    def as_json(self) -> dict[str, Any]:
        return {"ecosystem": self.ecosystem.value, "name": self.name,
                "version": self.version, "metadata_documents": sorted(self.documents),
                "files": self.files, "blobs_removed": self.blobs_removed,
                "bytes_removed": self.bytes_removed}


def _segments(url: str) -> list[str]:
    return [unquote(s) for s in urlsplit(url).path.split("/") if s]


def names_document(eco: Ecosystem, name: str, url: str) -> bool:
    """True when the upstream document at ``url`` is about ``name`` (its index page,
    packument, metadata, or one of its versions' documents). Errs towards more: a
    purged document costs one fetch, a kept one a stale answer."""
    if eco is Ecosystem.PYPI:
        norm = normalize(eco, name)
        return any(normalize(eco, s) == norm for s in _segments(url))
    if eco is Ecosystem.NPM:
        # ``/@scope%2fname``, ``/@scope/name``, ``/-/npm/v1/attestations/name@1.0.0``;
        # a bare name never matches inside a scoped one (``node`` in ``@types/node``)
        tokens = "/".join(_segments(url)).lower().split("/")
        wanted = name.lower()
        for i, token in enumerate(tokens):
            scoped = i > 0 and tokens[i - 1].startswith("@")
            candidate = f"{tokens[i - 1]}/{token}" if scoped else token
            if candidate == wanted or candidate.startswith(wanted + "@"):
                return True
        return False
    group, _, artifact = name.partition(":")
    path = "/" + "/".join(_segments(url)) + "/"
    return f"/{group.replace('.', '/')}/{artifact}/" in path


def _same_name(eco: Ecosystem, a: object, b: str) -> bool:
    return isinstance(a, str) and normalize(eco, a) == normalize(eco, b)


class Purger:
    """Removes a name's cached documents and files; tells the other processes."""

    def __init__(self, root: Path, metadata: RefStore, artifacts: RecordStore,
                 store: BlobStore) -> None:
        self._generation = root / GENERATION_FILE
        self._metadata = metadata
        self._artifacts = artifacts
        self._store = store

    async def purge(self, eco: Ecosystem, name: str, version: str | None) -> PurgeResult:
        """Purge ``name`` (or one ``version`` of it); the documents of the name go
        either way, as they list every version.

        Raises:
            StorageError: a record or blob could not be removed.
        """
        result = PurgeResult(eco, name, version)
        prefix = f"{eco.value}|"
        async for record in self._metadata.iter_records():
            key, url = record.get("key"), record.get("url")
            if isinstance(key, str) and key.startswith(prefix) and isinstance(url, str) \
                    and names_document(eco, name, url):
                await self._metadata.delete(key)
                result.documents.append(url)
        purged: dict[str, int] = {}
        kept: set[str] = set()
        async for record in self._artifacts.iter_records():
            sha256 = record.get("sha256")
            if not isinstance(sha256, str):
                continue
            ours = record.get("ecosystem") == eco.value and \
                _same_name(eco, record.get("name"), name) and \
                (version is None or record.get("version") == version)
            if not ours:
                kept.add(sha256)
                continue
            size = record.get("size")
            purged[sha256] = size if isinstance(size, int) else 0
            result.files.append({k: record.get(k) for k in (
                "filename", "version", "sha256", "size", "upstream")})
        for sha256, size in purged.items():
            if sha256 in kept:  # the same bytes under another name stay
                continue
            if await self._store.delete(sha256):
                result.blobs_removed += 1
                result.bytes_removed += size
        await asyncio.to_thread(self.bump)
        return result

    def bump(self) -> None:
        """Start a new generation: every process drops its in-memory documents."""
        bump_generation(self._generation)


_COUNTER = 8  # bytes: the generation counter, little-endian, at the file's start


def bump_generation(path: Path) -> None:
    """Increment the counter in the generation file at ``path`` (made if missing),
    in place under an exclusive lock, so every process's mapping sees it.

    Raises:
        OSError: the file cannot be made or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = os.pread(fd, _COUNTER, 0)
        # a file of another form (an older release's text) counts from what it holds
        count = int.from_bytes(held.ljust(_COUNTER, b"\0"), "little")
        os.pwrite(fd, ((count + 1) % 2**64).to_bytes(_COUNTER, "little"), 0)
    finally:
        os.close(fd)  # (and its lock: no mapping holds this open file)


def _map(path: str) -> mmap.mmap | None:
    """A shared read-only mapping of the generation file's counter (made first, with
    a zero counter, where storage can be written); None where that cannot be."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
    try:
        if os.fstat(fd).st_size < _COUNTER:
            with contextlib.suppress(OSError):  # not writable: no counter to map
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    size = os.fstat(fd).st_size  # (another process may have made it)
                    if size < _COUNTER:
                        os.pwrite(fd, bytes(_COUNTER - size), size)
                finally:
                    # unlocked here: the mapping keeps the open file (and would keep
                    # a lock on it) for as long as the process runs
                    fcntl.flock(fd, fcntl.LOCK_UN)
        if os.fstat(fd).st_size < _COUNTER:
            return None
        return mmap.mmap(fd, _COUNTER, mmap.MAP_SHARED, mmap.PROT_READ)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)  # the mapping keeps the file


class Generation:
    """This process's view of the purge generation: has another purge happened?"""

    def __init__(self, root: Path, *, stat_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._path = str(root / GENERATION_FILE)
        self._stat_every_s = stat_every_s
        self._clock = clock
        self._map = _map(self._path)
        self._count = self._read()
        self._seen = self._stamp()
        self._stat_at = clock() + stat_every_s

    def _read(self) -> bytes | None:
        return None if self._map is None else self._map[:_COUNTER]

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def changed(self) -> bool:
        """True once after each purge (by any process) since the last call."""
        if self._map is not None:
            count = self._map[:_COUNTER]
            if count != self._count:
                self._count = count
                self._seen = self._stamp()
                return True
            now = self._clock()
            if now < self._stat_at:
                return False
            self._stat_at = now + self._stat_every_s
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        # replaced (or made): map the file there now
        if self._map is not None:
            self._map.close()
        self._map = _map(self._path)
        self._count = self._read()
        return True
