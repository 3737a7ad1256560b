"""Maven: one upstream request for a cold artifact, its checksum read from headers.

Maven Central (and Artifactory, Nexus) send an artifact's digests with it, as
``X-Checksum-Sha1`` (``-Md5``, and ``-Sha256``/``-Sha512`` on some servers).
This module owns opening a cold artifact's upstream response before anything is
decided about it, once per artifact however many clients ask at once (and, with
the fetch lock files, once across the worker processes sharing a storage folder),
and reading those headers: ``maven.py`` decides on the headers (the digest to
verify with, the publish date from ``Last-Modified``), and the pipeline's fill
then streams the very response it was decided on (``Held.take``), so the artifact
costs one upstream request instead of a checksum file and itself.

A response nobody goes on with (refused, or a client gone) is closed unread. It
owns nothing of how the bytes are verified or stored (the pipeline does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum

from multidict import CIMultiDictProxy

from stockade.proxy.errors import ProxyError, UpstreamError, UpstreamStatusError
from stockade.proxy.singleflight import FileLocks
from stockade.proxy.upstream import Upstream, UpstreamResponse
from stockade.storage.digest import Digest, DigestError
from stockade.storage.errors import StorageError

logger = logging.getLogger(__name__)

STRENGTH = ("sha512", "sha256", "sha1")  # strongest first; md5 is never verified with
_MISSING_KEPT = 10_000  # 404s remembered per process, oldest dropped first
_SETTLE_S = 2.0  # how long a filled artifact's lock waits for its record, at most
_SETTLE_STEP_S = 0.005


def header_digest(headers: CIMultiDictProxy[str]) -> Digest | None:
    """The strongest well-formed ``X-Checksum-<alg>`` digest in ``headers``, or None.
    A header sent more than once, of the wrong length or not hex is ignored (the
    checksum file is asked for instead)."""
    for alg in STRENGTH:
        values = headers.getall(f"X-Checksum-{alg.capitalize()}", [])
        if len(values) != 1:
            continue
        value = values[0].strip()
        if not value or not all(c in "0123456789abcdefABCDEF" for c in value):
            continue
        try:
            return Digest.parse(alg, value)
        except DigestError:
            continue
    return None


class Outcome(Enum):
    """What opening an artifact found."""

    OPEN = "open"  # the response is open: decide on its headers, then ``take`` it
    STORED = "stored"  # stored meanwhile (by another worker process): serve that
    MISSING = "missing"  # the upstream answered 404 or 410


class Held:
    """One upstream response of an artifact, headers read, body not yet: shared by
    every request that asked for the artifact while it was being opened.

    Each of them ``leave``s it when done; the first fill to ``take`` it streams its
    body. It is closed once that fill is done with it, or once every request left
    it untaken; the requests still deciding then join the fill, or find the
    artifact stored.
    """

    def __init__(self, upstream: Upstream, url: str) -> None:
        self.upstream = upstream
        self.url = url
        self.outcome = Outcome.MISSING
        self.response: UpstreamResponse | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.released = asyncio.Event()
        self.users = 0
        self._taken = False
        self._take_done = False
        self.taken_whole = False  # the fill read the body to its end
        self._closed = False

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The response's headers (kept once it is closed)."""
        assert self._headers is not None
        return self._headers

    def leave(self) -> None:
        """A request is done with this response (served, refused or gone)."""
        self.users -= 1
        self._check()

    def _check(self) -> None:
        if self._take_done or (self.users <= 0 and not self._taken):
            self.released.set()

    def close(self) -> None:
        self._closed = True
        self.response = None  # nothing of it kept by a source that outlives it
        self.released.set()

    @contextlib.asynccontextmanager
    async def take(self, url: str) -> AsyncIterator[UpstreamResponse]:
        """The response for a fill to stream (the pipeline's ``opener``), once.

        Raises:
            UpstreamError: it was taken before (by a fill that failed, since one
                that stored the artifact is found stored): the request decided on
                it fails as that fill's did, rather than asking the upstream again
                with what that response said.
        """
        if self._taken or self.response is None or url != self.url:
            raise UpstreamError(
                f"upstream {self.upstream.name}: the fetch of {self.url} that this request "
                "waited for failed; ask again", upstream=self.upstream.name)
        self._taken = True
        try:
            yield self.response
            self.taken_whole = True
        finally:
            self._take_done = True
            self._check()


class Openings:
    """The artifacts being opened by this process, one upstream response each."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: dict[str, Held] = {}
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = clock

    async def open(self, key: str, upstream: Upstream, url: str, *,
                   stored: Callable[[], Awaitable[bool]],
                   recorded: Callable[[], Awaitable[bool]], locks: FileLocks | None,
                   negative_ttl_s: float, stale_if_error_s: float) -> Held:
        """The shared response for ``url``; the caller must ``leave`` it.

        ``stored`` says whether the artifact is stored by now (asked under the
        lock, before the upstream is); ``recorded``, more cheaply, whether its
        record is written (once a fill read the response to its end: the lock is
        held until then). A 404 is remembered for ``negative_ttl_s``
        (by this process), and still answers for ``stale_if_error_s`` while the
        upstream fails.

        Raises:
            UpstreamError: the upstream failed (other than a 404 or 410).
        """
        when = self._missing.get(key)
        if when is not None and self._clock() - when < negative_ttl_s:
            held = Held(upstream, url)
            held.users = 1
            held.ready.set()
            held.close()
            return held
        current = self._held.get(key)
        if current is None or current.released.is_set():
            held = Held(upstream, url)
            self._held[key] = held
            task = asyncio.create_task(
                self._run(key, held, stored, recorded, locks, stale_if_error_s),
                name=f"open {key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            held = current
        held.users += 1
        try:
            await held.ready.wait()
        except BaseException:
            held.leave()
            raise
        if held.error is not None:
            held.leave()
            raise held.error
        return held

    async def _run(self, key: str, held: Held, stored: Callable[[], Awaitable[bool]],
                   recorded: Callable[[], Awaitable[bool]], locks: FileLocks | None,
                   stale_if_error_s: float) -> None:
        hold = locks.hold(f"maven-open|{key}") if locks is not None else (
            contextlib.nullcontext())
        try:
            async with hold:
                if await stored():
                    held.outcome = Outcome.STORED
                    held.ready.set()
                    return
                try:
                    async with held.upstream.get(held.url) as response:
                        self._missing.pop(key, None)
                        held.response = response
                        held._headers = response.headers
                        held.outcome = Outcome.OPEN
                        held.ready.set()
                        await held.released.wait()
                    if held.taken_whole:
                        await self._settle(recorded)
                except UpstreamStatusError as exc:
                    if held.ready.is_set() or exc.upstream_status not in (404, 410):
                        raise
                    self._missing[key] = self._clock()
                    self._missing.move_to_end(key)
                    while len(self._missing) > _MISSING_KEPT:
                        self._missing.popitem(last=False)
                    held.ready.set()
                except UpstreamError:
                    when = self._missing.get(key)
                    if held.ready.is_set() or when is None or (
                            self._clock() - when > stale_if_error_s):
                        raise
                    logger.info("answering the remembered 404 of %s: upstream %s fails",
                                held.url, held.upstream.name)
                    held.ready.set()
        except asyncio.CancelledError:
            if not held.ready.is_set():
                held.error = ProxyError("stockade is shutting down")
            raise
        except (ProxyError, StorageError, OSError) as exc:  # told to every request waiting
            if not held.ready.is_set():
                held.error = exc
            else:
                logger.debug("closing %s: %s", held.url, exc)
        except Exception:
            logger.exception("unexpected error opening %s", held.url)
            if not held.ready.is_set():
                held.error = ProxyError(f"internal error fetching {held.url}")
        finally:
            held.close()
            held.ready.set()
            if self._held.get(key) is held:
                del self._held[key]

    @staticmethod
    async def _settle(recorded: Callable[[], Awaitable[bool]]) -> None:
        """Hold the lock until the fill that read the body has stored the artifact
        (its digest checked, its record written: moments), so another worker
        process finds it stored rather than asking again; not past ``_SETTLE_S``
        (a digest mismatch stores nothing)."""
        waited = 0.0
        while waited < _SETTLE_S and not await recorded():
            await asyncio.sleep(_SETTLE_STEP_S)
            waited += _SETTLE_STEP_S

    async def close(self) -> None:
        """Close every response still held (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
