"""Rendered metadata documents: made once, served from disk many times.

Owns the files behind large rewritten documents (npm packuments reach tens of
megabytes) and the CPU work of making them. Each is rendered once per key (the
key names the upstream document version, the policy revision and the form),
written with a gzip sibling so aiohttp's file response can send either with
sendfile, and kept under a byte budget, least recently used first. Small ones
(most packuments) are also kept in memory, both forms, under a budget of their
own, and answered from there: a warm request opens no file.

Parsing and rendering a large document holds the interpreter lock for tens of
milliseconds at a time; in threads, twenty of them at once would starve the
event loop. So work on large documents runs in a small pool of worker
processes (started on first use), small documents in a thread. Work on the
largest documents (``LARGE_BYTES`` of input and more) also takes one of the
server's render slots (``renderslots.RenderSlots``, shared by every worker
process), and callers may hold a slot from before they read such a body
(``large()``): memory then grows with the slots, not with the documents asked
for at once. Pool processes die with the process that started them. Memory a large piece of
work used is given back to the system once it is done (``release_memory``, in the
pool process and in the serving process): without that, each process keeps the
high-water mark of the largest document it ever parsed. Rendered files
are derived data: each server process keeps its own under ``<root>/<pid>/``,
cleared when it starts (with the folders of processes no longer running), and
whatever is missing is rendered again; a worker process that starts never
removes the files another one is serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gzip
import hashlib
import logging
import os
import shutil
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from stockade.proxy.blobresponse import accel_response
from stockade.proxy.budget import MemoryBudget, unbounded
from stockade.proxy.renderslots import RenderSlots
from stockade.proxy.singleflight import SingleFlight
from stockade.proxy.successions import Successions

if TYPE_CHECKING:
    from concurrent.futures import Executor, ProcessPoolExecutor

    from stockade.proxy.pipeline import Accel

logger = logging.getLogger(__name__)

T = TypeVar("T")

_IN_MEMORY_MAX = 1024 * 1024  # bytes: documents this small are kept in memory too
LARGE_BYTES = 4 * 1024 * 1024  # bytes of input from which work takes a render slot
_PR_SET_PDEATHSIG = 1  # prctl(2)
_M_TRIM_THRESHOLD = -1  # mallopt(3)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Allocations from this size on are mapped on their own, and unmapped when freed.
_MMAP_THRESHOLD = 1024 * 1024
# Free memory at the heap's top kept for the next allocations up to this size (a
# trim by ``release_memory`` gives it back).
_TRIM_THRESHOLD = 2 * 1024 * 1024
# Added to the niceness of pool processes: rendering a large document keeps a core
# busy for seconds, and a serving process waiting for that core holds every request
# it has (a warm request's wait for the processor was most of its 99th percentile
# while cold large documents rendered). The work itself is no less: it runs when
# the serving processes leave the processor to it.
RENDER_NICENESS = 10


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered document on disk."""

    path: Path
    size: int
    etag: str
    created_at: float
    body: bytes | None = None  # both forms in memory, for a small document
    gzipped: bytes | None = None

    @property
    def memory_bytes(self) -> int:
        """Bytes this entry holds in memory."""
        return len(self.body or b"") + len(self.gzipped or b"")


def respond(request: web.BaseRequest, rendered: Rendered, headers: dict[str, str],
            accel: Accel | None = None) -> web.StreamResponse:
    """Answer ``request`` with a rendered document: from memory where the form the
    client takes is held (gzip where it takes it, 304 for its entity tag), else from
    its files (a ranged request too: aiohttp's file response answers those), or, in
    front-server mode, by naming the file to the front server (which picks the gzip
    sibling itself, ``gzip_static``)."""
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "").lower()
    held = rendered.gzipped if gzipped else rendered.body
    if held is None or "Range" in request.headers:
        where = None if accel is None else accel.location(rendered.path)
        if where is not None:
            return accel_response(request, where, rendered.etag, headers)
        return web.FileResponse(rendered.path, headers=headers)
    headers = {**headers, "ETag": rendered.etag}
    wanted = request.headers.get("If-None-Match")
    if wanted is not None and rendered.etag in (t.strip() for t in wanted.split(",")):
        return web.Response(status=304, headers=headers)
    if gzipped:
        return web.Response(body=held, headers={**headers, "Content-Encoding": "gzip"})
    return web.Response(body=held, headers=headers)


def _render_to_file(
    root: Path, key: str, created_at: float, render: Callable[..., bytes], args: tuple[Any, ...],
    kwargs: dict[str, Any], compress: bool = True,
) -> Rendered:
    """Render and write ``<hash>.json`` and, with ``compress`` (or when it is small
    enough to be kept in memory), ``<hash>.json.gz`` (runs in a worker)."""
    body = render(*args, **kwargs)
    digest = hashlib.sha256(body).hexdigest()
    name = hashlib.sha256(key.encode()).hexdigest()
    path = root / f"{name}-{digest[:16]}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    small = len(body) <= _IN_MEMORY_MAX
    gzipped = None
    if compress or small:
        gz_tmp = path.with_name(path.name + ".gz.tmp")
        gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        gz_tmp.write_bytes(gzipped)
        os.replace(gz_tmp, path.with_name(path.name + ".gz"))
    # A large document's gzip form is often small enough to hold (an abbreviated
    # packument of 20 MB: about a tenth), and most clients take it: held, it is
    # answered from memory rather than through a file response per request.
    return Rendered(path, len(body), f'"{digest[:32]}"', created_at,
                    body if small else None,
                    gzipped if gzipped is not None and len(gzipped) <= _IN_MEMORY_MAX
                    else None)


class RenderedCache:
    """Rendered documents under ``root``, at most ``max_bytes`` of them."""

    def __init__(
        self, root: Path, *, max_bytes: int = 1024**3, workers: int | None = None,
        clock: Callable[[], float] = time.time, memory_bytes: int = 32 * 1024**2,
        slots: RenderSlots | None = None, budget: MemoryBudget | None = None,
    ) -> None:
        self._base = root
        self._root = root / str(os.getpid())  # set again by open(), in the serving process
        self._max_bytes = max_bytes
        self._memory_max = memory_bytes
        self._memory_used = 0
        # the forms held in memory, counted with the process's other caches
        self._account = (budget or unbounded()).account("rendered", memory_bytes,
                                                        self._shed_one)
        self._workers = workers or min(4, os.cpu_count() or 1)
        self._clock = clock
        self._entries: OrderedDict[str, Rendered] = OrderedDict()
        self._used = 0
        self._flight: SingleFlight[str, Rendered] = SingleFlight()
        self._preparing: SingleFlight[str, Rendered] = SingleFlight()  # see ``once``
        # the answers made from rendered documents, standing in while the next is made
        self.successions: Successions[Any] = Successions()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = asyncio.Lock()
        self._slots = slots

    async def open(self) -> None:
        """Start empty: rendered files are derived and may belong to an old policy.
        Large documents' bodies are then mapped on their own in this (the serving)
        process: each is given back when freed (``bound_heap``)."""
        bound_heap()  # set first thing by `stockade serve`; here for an app made otherwise
        await asyncio.to_thread(self._reset)

    def _reset(self) -> None:
        self._root = self._base / str(os.getpid())
        self._base.mkdir(parents=True, exist_ok=True)
        for entry in self._base.iterdir():
            if entry == self._root or not _running(entry.name):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:  # a file of the layout before per-process folders
                    entry.unlink(missing_ok=True)
        self._root.mkdir()

    async def close(self) -> None:
        """Stop the worker processes."""
        await self.successions.close()
        await self._preparing.cancel_all()
        await self._flight.cancel_all()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def _executor(self, heavy: bool) -> Executor | None:
        if not heavy:
            return None  # the loop's default thread pool
        async with self._pool_lock:
            if self._pool is None:
                # Starting the workers takes a while: never on the event loop.
                self._pool = await asyncio.to_thread(self._start_pool)
        return self._pool

    def _start_pool(self) -> ProcessPoolExecutor:
        # Imported here: a process that never renders a large document (most never
        # do) does not hold the process pool's modules (some 2 MiB).
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: forking a process that runs threads and an event loop is unsafe.
        pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))
        for future in [pool.submit(int) for _ in range(self._workers)]:
            future.result()
        return pool

    async def compute(self, heavy: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` off the event loop: in a worker process when ``heavy``.

        ``fn`` and its arguments must be picklable when ``heavy``. Heavy work given
        ``LARGE_BYTES`` or more (bytes, or files named by path) runs in a render slot.
        """
        loop = asyncio.get_running_loop()
        executor = await self._executor(heavy)
        size = _input_bytes(args, kwargs) if heavy else 0
        # the pool process gives back what a large computation used once it is done
        call = _call_released if size >= LARGE_BYTES else _call
        async with self.large(size):
            return await loop.run_in_executor(executor, call, fn, args, kwargs)

    @contextlib.asynccontextmanager
    async def large(self, size: int) -> AsyncIterator[None]:
        """Hold one of the server's render slots for work on ``size`` bytes, where
        that is ``LARGE_BYTES`` or more (else at once): read a large body inside it."""
        if self._slots is None or size < LARGE_BYTES:
            yield
            return
        outermost = not self._slots.held
        async with self._slots.hold():
            yield
        if outermost:  # what the work on a large body used, given back
            await asyncio.to_thread(release_memory)

    def peek(self, key: str, *, max_age_s: float) -> Rendered | None:
        """The rendered document for ``key`` if there is one young enough (no rendering)."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.created_at < max_age_s:
            self._entries.move_to_end(key)
            return entry
        return None

    async def get(
        self, key: str, render: Callable[..., bytes], *args: Any, max_age_s: float,
        heavy: bool, compress: bool = True, **kwargs: Any,
    ) -> Rendered:
        """The rendered document for ``key``, rendering it (once) if absent or too old.

        Without ``compress``, a document too large to be kept in memory gets no gzip
        sibling: for one that is only read to make another (never served itself).
        """
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.created_at < max_age_s:
            self._entries.move_to_end(key)
            return entry

        async def make() -> Rendered:
            made = await self.compute(
                heavy, _render_to_file, self._root, key, self._clock(), render, args, kwargs,
                compress,
            )
            self._add(key, made)
            return made

        return await self._flight.do(key, make)

    async def once(self, key: str, work: Callable[[], Awaitable[Rendered]]) -> Rendered:
        """``work()``, run once for the callers asking for ``key`` meanwhile: for a
        rendering whose input must be read first (a large document's body, from disk,
        in a render slot), read once rather than once per waiting request. ``work``
        calls ``get(key, ...)``, which renders it."""
        return await self._preparing.do(key, work)

    def _add(self, key: str, entry: Rendered) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._used -= old.size
            self._memory_used -= old.memory_bytes
            self._account.release(old.memory_bytes)
            if old.path != entry.path:
                _unlink(old)
        if entry.memory_bytes and not self._account.takes(entry.memory_bytes):
            entry = replace(entry, body=None, gzipped=None)  # larger than the budget
        self._entries[key] = entry
        self._used += entry.size
        self._memory_used += entry.memory_bytes
        self._account.charge(entry.memory_bytes)  # past the budget, some cache sheds
        while self._used > self._max_bytes and len(self._entries) > 1:
            _, victim = self._entries.popitem(last=False)
            self._used -= victim.size
            self._memory_used -= victim.memory_bytes
            self._account.release(victim.memory_bytes)
            _unlink(victim)
        if self._memory_used > self._memory_max:
            self._shed_memory()

    def forget_all(self) -> None:
        """Drop every rendered document (a purge: their sources may be gone)."""
        entries, self._entries = self._entries, OrderedDict()
        self._account.release(self._memory_used)
        self._used = self._memory_used = 0
        for entry in entries.values():
            _unlink(entry)

    def _shed_memory(self) -> None:
        """Keep the least recently used documents on disk only, down to the bound."""
        while self._memory_used > self._memory_max and self._shed_one():
            pass

    def _shed_one(self) -> bool:
        """Keep the least recently used document held in memory on disk only; False
        when none is held."""
        for key, entry in self._entries.items():
            if entry.memory_bytes:
                self._memory_used -= entry.memory_bytes
                self._account.release(entry.memory_bytes)
                # same key, same place: replacing a value keeps the order
                self._entries[key] = replace(entry, body=None, gzipped=None)
                return True
        return False


def _running(name: str) -> bool:
    """True when ``name`` is the id of a process still running (its files in use)."""
    if not name.isdigit():
        return False
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    except (OverflowError, ValueError):
        return False  # no process has such an id
    return True


def _input_bytes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """How much a computation is given: its bytes, and the files it is given by path."""
    total = 0
    for value in (*args, *kwargs.values()):
        if isinstance(value, bytes | bytearray | memoryview):
            total += len(value)
        elif isinstance(value, Path) and value.suffix:  # a file, not a folder
            with contextlib.suppress(OSError):
                total += value.stat().st_size
        elif isinstance(value, tuple):  # what a rendering passes on to its function
            total += _input_bytes(value, {})
        elif isinstance(value, dict):
            total += _input_bytes((), value)
    return total


def _die_with_parent(parent: int) -> None:
    """Have the kernel end a pool process when the process that started it ends (even
    killed), so none is left behind holding memory; Linux only, elsewhere a no-op.
    Large blocks of the pool process are then mapped on their own (``bound_heap``),
    and it yields the processor to the serving processes (``RENDER_NICENESS``)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the call took effect
        os.kill(os.getpid(), signal.SIGKILL)
    bound_heap()
    with contextlib.suppress(OSError, AttributeError):  # no nice() outside Unix
        os.nice(RENDER_NICENESS)


def _call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return fn(*args, **kwargs)


def _call_released(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """``fn(*args, **kwargs)``, then what it used given back (in a pool process)."""
    try:
        return fn(*args, **kwargs)
    finally:
        release_memory()


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, where it has glibc's ``mallopt`` and ``malloc_trim``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (missing outside glibc)
    except (OSError, AttributeError):
        return None
    return libc


def bound_heap() -> None:
    """Map every allocation of ``_MMAP_THRESHOLD`` bytes or more on its own in this
    process, so a document's body goes back to the system the moment it is freed.

    glibc starts so, but raises the threshold each time such a block is freed (up to
    32 MiB): the next 20 MB bodies then come from the heap, which keeps what it
    grew to. Setting the threshold fixes it. And one heap (arena) for every thread
    of the process. glibc only; elsewhere nothing.

    Setting it also fixes the heap's trim threshold, at 128 KiB: every free that left
    that much at the heap's top gave it back, and the next request's near-megabyte
    send buffer faulted its pages in anew (some 250 page faults a request: a warm
    ~1 MB file cost twice the CPU). The top now keeps up to ``_TRIM_THRESHOLD``; the
    caches' sheds trim it (``heaptrim``).
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        # One heap for every thread: glibc gives each thread that allocates a heap of
        # its own (up to eight per core), and the bytes a pool thread read and a cache
        # still holds pin it. Python allocates holding the interpreter lock, so the
        # threads of one process hardly ever wait for the one heap.
        libc.mallopt(_M_ARENA_MAX, 1)


def release_memory() -> None:
    """Give the free pages of every heap of this process back to the system (after
    work on a large document: the many small objects of a parsed document leave the
    heap grown, and freed, and kept). glibc only; elsewhere nothing."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _unlink(entry: Rendered) -> None:
    # A client already sending this file keeps its open descriptor.
    for path in (entry.path, entry.path.with_name(entry.path.name + ".gz")):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("cannot remove rendered document %s: %s", path, exc)
