"""The upstream client: one pooled session per configured upstream.

Owns talking to upstreams: timeouts, bounded retries with backoff for
idempotent requests, redirects checked against the upstream's allowed origins
(scheme, host and port), credentials sent to the upstream's own origin only,
refusing every request of an offline upstream and, for a while, of an origin
(scheme, host, port) that could not be reached (so an outage costs one
connect, not one per request; a refused connection is not retried, and any
answer from the origin ends the outage), and translating aiohttp's
exceptions into ``UpstreamError`` types. It is the only module that catches
aiohttp client exceptions. Nothing from the client's request is forwarded:
callers pass the few headers the protocol needs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import random
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDictProxy

from stockade import __version__
from stockade.config.model import Origin, UpstreamSettings, url_origin
from stockade.proxy.errors import (
    HostNotAllowedError,
    NotCachedError,
    UpstreamBodyError,
    UpstreamError,
    UpstreamRedirectError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamTLSError,
    UpstreamUnavailableError,
)
from stockade.proxy.metrics import Metrics
from stockade.proxy.renderslots import RenderSlots

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

USER_AGENT = f"stockade/{__version__}"
CHUNK = 64 * 1024  # bytes
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_MAX_REDIRECTS = 5
LARGE_BODY_BYTES = 4 * 1024 * 1024  # a document body from which reading takes a read slot
SPOOL_WRITE_BYTES = 1024 * 1024  # a large body's chunks are written out this much at a time


@dataclass(slots=True)
class UpstreamResponse:
    """An open upstream response whose body is read by streaming."""

    upstream: str
    url: str
    status: int
    headers: CIMultiDictProxy[str]
    _raw: aiohttp.ClientResponse
    read_slots: RenderSlots | None = None  # bounds large bodies read at once (``read``)
    spool_folder: Path | None = None  # where large bodies are spooled (None: the system's)

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value and value.isdigit() else None

    @property
    def framed(self) -> bool:
        """True when the body's end can be told from a broken connection: it has a
        Content-Length or chunked framing (else it ends when the connection closes,
        and a body cut short looks whole)."""
        if self.content_length is not None:
            return True
        coding = self.headers.get("Transfer-Encoding", "")
        return "chunked" in coding.lower()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Stream the body, raising ``UpstreamBodyError`` if it ends early."""
        received = 0
        with _translated(self.upstream, self.url, reading=True):
            async for chunk in self._raw.content.iter_chunked(CHUNK):
                received += len(chunk)
                yield chunk
        expected = self.content_length
        if expected is not None and received != expected and not self.headers.get(
            "Content-Encoding"
        ):
            raise UpstreamBodyError(
                f"upstream {self.upstream} sent {received} of {expected} bytes of {self.url}",
                upstream=self.upstream,
            )

    async def read(self, max_bytes: int) -> bytes:
        """The whole body, for metadata documents, refusing more than ``max_bytes``.

        A body that reaches ``LARGE_BODY_BYTES`` is read on in one of the server's
        read slots, where the upstream has them (``Upstream.bound_reads``): the rest
        waits in the socket meanwhile, so memory grows with the slots, not with the
        large documents asked for at once. From that size on it goes to a spool
        file as it comes, read back whole off the event loop: joining tens of
        megabytes of chunks held the loop for 30 to 150 ms (the copy, and the fresh
        pages it touches), and the chunks and their join were in memory together.
        """
        parts: list[bytes] = []
        size = pending = 0
        spool: BinaryIO | None = None
        spooling = False
        async with contextlib.AsyncExitStack() as stack:
            async for chunk in self.iter_chunks():
                size += len(chunk)
                if size > max_bytes:
                    raise UpstreamBodyError(
                        f"upstream {self.upstream} document {self.url} exceeds {max_bytes} "
                        "bytes", upstream=self.upstream,
                    )
                parts.append(chunk)
                pending += len(chunk)
                if not spooling and size >= LARGE_BODY_BYTES:
                    spooling = True
                    if self.read_slots is not None:
                        await stack.enter_async_context(self.read_slots.hold())
                    spool = await self._open_spool(stack)
                if spool is not None and pending >= SPOOL_WRITE_BYTES:
                    await self._spooled(asyncio.to_thread(spool.writelines, parts))
                    parts, pending = [], 0
            if spool is None:
                return b"".join(parts)  # small, or no spool could be made: in memory
            return await self._spooled(asyncio.to_thread(_read_back, spool, parts))

    async def _open_spool(self, stack: contextlib.AsyncExitStack) -> BinaryIO | None:
        """A spool file for a large body, or None where none can be made (an
        unwritable or missing folder): the body is then joined in memory, as before
        spooling, rather than refused. The file has no name: nothing is left behind."""
        try:
            folder = self.spool_folder
            return stack.enter_context(await asyncio.to_thread(
                lambda: tempfile.TemporaryFile(dir=folder)))
        except OSError as exc:
            logger.warning("no spool file for %s (%s): its body is kept in memory", self.url, exc)
            return None

    async def _spooled(self, work: Awaitable[_T]) -> _T:
        """``work`` on the spool file; a failure there (a full disk) refuses the
        document as an upstream body error, with the reason, never a 500."""
        try:
            return await work
        except OSError as exc:
            raise UpstreamBodyError(
                f"the body of {self.url} from upstream {self.upstream} could not be "
                f"spooled to the temporary folder: {exc.strerror or exc}",
                upstream=self.upstream,
            ) from exc


def _read_back(spool: BinaryIO, parts: list[bytes]) -> bytes:
    """The spooled body with ``parts`` written after it, read in one call (which
    gives the interpreter lock up while the kernel copies)."""
    spool.writelines(parts)
    spool.seek(0)
    return spool.read()


class Upstream:
    """One configured upstream registry and its connection pool."""

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        metrics: Metrics,
        environ: Mapping[str, str],
        offline: bool = False,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.url = settings.url
        self.internal = settings.internal
        # Offline (server.offline, or the upstream's own offline): never contacted.
        self.offline = offline or settings.offline
        self._metrics = metrics
        self._origin = url_origin(settings.url)
        self._origins = settings.origins
        self._hosts = frozenset(host for _, host, _ in self._origins)
        self._auth = _auth_header(settings, environ)
        self._session: aiohttp.ClientSession | None = None
        # origin -> time.monotonic() until which it is not asked (it could not be reached)
        self._unreachable_until: dict[Origin | None, float] = {}
        self._read_slots: RenderSlots | None = None
        self._spool_folder: Path | None = None

    def bound_reads(self, slots: RenderSlots, spool_folder: Path | None = None) -> None:
        """Read large document bodies from this upstream in ``slots`` (the server's),
        spooled in ``spool_folder`` (the storage's, not a temporary folder that may be
        held in memory; None: the system's temporary folder)."""
        self._read_slots = slots
        self._spool_folder = spool_folder

    async def start(self) -> None:
        """Open the pooled session."""
        # True: aiohttp's verifying context (the system's certificate store), made
        # once when aiohttp is imported, so shared by every session of a process and,
        # imported before the fork, by every worker; making one of our own loaded the
        # store again (about 60 ms of each start).
        ssl_ctx: bool = True
        if not self.settings.verify_tls:
            ssl_ctx = False  # explicit operator choice, logged at start
            logger.warning("TLS verification is off for upstream %s", self.name)
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections, ssl=ssl_ctx, enable_cleanup_closed=True
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout_s,
            sock_read=self.settings.read_timeout_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def hosts(self) -> frozenset[str]:
        """The host names this upstream's documents and files may come from (on the
        schemes and ports ``allows`` checks)."""
        return self._hosts

    def allows(self, url: str) -> bool:
        """True when ``url`` has the scheme, host and port of this upstream or of one
        of its file hosts."""
        return url_origin(url) in self._origins

    def resolve(self, link: str, base: str) -> str | None:
        """Resolve a link from upstream metadata; None when its host is not allowed."""
        url = urljoin(base, link)
        url = url.split("#", 1)[0]
        return url if self.allows(url) else None

    def _headers_for(self, url: str, headers: Mapping[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if self._auth and url_origin(url) == self._origin:
            out["Authorization"] = self._auth
        return out

    def _refuse(self, url: str) -> None:
        """Fail at once, asking nothing, when the upstream is offline or the URL's
        origin could not be reached a moment ago."""
        if self.offline:
            raise NotCachedError(
                f"upstream {self.name} is offline: {url} is not cached and is not fetched")
        if not self._unreachable_until:
            return  # the usual case: no outage, no URL to parse
        until = self._unreachable_until.get(url_origin(url))
        left = 0.0 if until is None else until - time.monotonic()
        if left > 0:
            raise UpstreamUnavailableError(
                f"upstream {self.name} could not be reached; not asking it again for "
                f"{left:.0f}s ({url})", upstream=self.name)

    @property
    def unreachable_for_s(self) -> float:
        """Seconds until an origin of this upstream that could not be reached is asked
        again (0: every origin is asked as usual)."""
        now = time.monotonic()
        return max((until - now for until in self._unreachable_until.values()), default=0.0
                   ) if self._unreachable_until else 0.0

    def _mark_unreachable(self, url: str, exc: UpstreamError) -> None:
        """Remember that ``url``'s origin could not be reached at all (not a bad answer)."""
        if _unreachable(exc) and self.settings.unreachable_retry_s > 0:
            logger.info("upstream %s is unreachable; not asking it again for %.0fs: %s",
                        self.name, self.settings.unreachable_retry_s, exc)
            self._unreachable_until[url_origin(url)] = (
                time.monotonic() + self.settings.unreachable_retry_s)

    def _mark_reachable(self, url: str) -> None:
        """The origin answered: whatever outage it had is over."""
        if self._unreachable_until and self._unreachable_until.pop(
                url_origin(url), None) is not None:
            logger.info("upstream %s answers again", self.name)

    @asynccontextmanager
    async def get(
        self, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        """GET ``url`` with retries, yielding the open response.

        Statuses other than 2xx and 304 raise ``UpstreamStatusError``.

        Raises:
            HostNotAllowedError: the URL (or a redirect) leaves the allowed hosts.
            UpstreamError: connect failures, timeouts, bad statuses.
        """
        response = await self._open_with_retries(url, headers)
        try:
            yield response
        finally:
            response._raw.release()

    async def post(
        self, url: str, body: bytes, *, content_type: str, max_bytes: int,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        """POST ``body`` to ``url`` once (no redirects, no retries); (status, type, body).

        Used for the few read-only queries a registry takes as POST (npm's audit
        endpoints). Statuses are returned, not raised.

        Raises:
            HostNotAllowedError: the URL is not on this upstream.
            UpstreamError: connect failures, timeouts, a body over ``max_bytes``.
        """
        self._refuse(url)
        if self._session is None:
            raise UpstreamUnavailableError(f"upstream {self.name} is not started")
        if not self.allows(url):
            raise HostNotAllowedError(
                f"refusing to send to {url}: host is not part of upstream {self.name}",
                upstream=self.name,
            )
        headers = self._headers_for(
            url, {**(headers or {}), "Content-Type": content_type, "Accept": "*/*"})
        started = time.perf_counter()
        try:
            with _translated(self.name, url, reading=False):
                async with self._session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as raw:
                    self._mark_reachable(url)
                    self._metrics.upstream_requests.labels(self.name, str(raw.status)).inc()
                    response = UpstreamResponse(self.name, url, raw.status, raw.headers, raw,
                                                self._read_slots, self._spool_folder)
                    data = await response.read(max_bytes)
                    return raw.status, raw.headers.get("Content-Type", ""), data
        finally:
            self._metrics.upstream_duration.labels(self.name).observe(
                time.perf_counter() - started
            )

    async def _open_with_retries(
        self, url: str, headers: Mapping[str, str] | None
    ) -> UpstreamResponse:
        self._refuse(url)
        attempt = 0
        while True:
            try:
                return await self._open(url, headers)
            except (UpstreamUnavailableError, UpstreamTimeoutError, UpstreamStatusError) as exc:
                retriable = not isinstance(exc, UpstreamStatusError) or (
                    exc.upstream_status in _RETRY_STATUSES
                )
                if _refused(exc):
                    # Nothing listens there: asking again a moment later only makes
                    # every client of an outage wait through the back-off.
                    retriable = False
                if not retriable or attempt >= self.settings.retries:
                    self._mark_unreachable(url, exc)
                    raise
                attempt += 1
                delay = min(2.0, 0.1 * 2**attempt) * (0.5 + random.random())  # noqa: S311
                logger.info(
                    "retrying %s on upstream %s in %.2fs: %s", url, self.name, delay, exc
                )
                await asyncio.sleep(delay)
                self._refuse(url)  # another request found it unreachable meanwhile

    async def _open(self, url: str, headers: Mapping[str, str] | None) -> UpstreamResponse:
        if self._session is None:
            raise UpstreamUnavailableError(f"upstream {self.name} is not started")
        started = time.perf_counter()
        for _ in range(_MAX_REDIRECTS + 1):
            if not self.allows(url):
                raise HostNotAllowedError(
                    f"refusing to fetch {url}: its scheme, host and port are not those of "
                    f"upstream {self.name} or its file hosts",
                    upstream=self.name,
                )
            raw = await self._request(url, headers)
            self._mark_reachable(url)  # each origin that answers, a redirect too
            if raw.status in (301, 302, 303, 307, 308) and "Location" in raw.headers:
                url = urljoin(url, raw.headers["Location"])
                raw.release()
                continue
            break
        else:
            raise UpstreamRedirectError(
                f"upstream {self.name} redirected more than {_MAX_REDIRECTS} times for {url}",
                upstream=self.name,
            )
        elapsed = time.perf_counter() - started
        self._metrics.upstream_requests.labels(self.name, str(raw.status)).inc()
        self._metrics.upstream_duration.labels(self.name).observe(elapsed)
        if raw.status >= 400 or raw.status < 200 or (300 <= raw.status < 400 and raw.status != 304):
            raw.release()
            raise UpstreamStatusError(
                f"upstream {self.name} answered {raw.status} for {url}",
                upstream=self.name, upstream_status=raw.status,
            )
        return UpstreamResponse(self.name, url, raw.status, raw.headers, raw,
                                self._read_slots, self._spool_folder)

    async def _request(
        self, url: str, headers: Mapping[str, str] | None
    ) -> aiohttp.ClientResponse:
        assert self._session is not None
        try:
            with _translated(self.name, url, reading=False):
                return await self._session.get(
                    url, headers=self._headers_for(url, headers), allow_redirects=False
                )
        except UpstreamError as exc:
            self._metrics.upstream_requests.labels(self.name, _STATUS_LABEL[type(exc)]).inc()
            raise


# The status label of a request that got no HTTP status.
_STATUS_LABEL: dict[type[UpstreamError], str] = {
    UpstreamTimeoutError: "timeout", UpstreamTLSError: "tls_error",
    UpstreamUnavailableError: "error", UpstreamBodyError: "error",
}


def _unreachable(exc: UpstreamError) -> bool:
    """True when ``exc`` says the upstream could not be reached at all (refused, no
    route or name, a connect that timed out), not that it answered badly."""
    cause = exc.__cause__
    return (isinstance(exc, UpstreamUnavailableError)
            and not isinstance(exc, UpstreamTLSError)) or isinstance(
                cause, aiohttp.ConnectionTimeoutError)


def _refused(exc: UpstreamError) -> bool:
    """True when the connection was refused: nothing listens at the upstream's port."""
    cause = exc.__cause__
    return (isinstance(cause, aiohttp.ClientConnectorError)
            and cause.os_error.errno == errno.ECONNREFUSED)


@contextmanager
def _translated(upstream: str, url: str, *, reading: bool) -> Iterator[None]:
    """aiohttp's exceptions as ``UpstreamError`` types, with the sentence a user reads.

    ``reading``: the response has begun, so a broken connection is a broken body.
    """
    try:
        yield
    except TimeoutError as exc:
        what = "stopped sending" if reading else "did not answer in time for"
        raise UpstreamTimeoutError(f"upstream {upstream} {what} {url}",
                                   upstream=upstream) from exc
    except aiohttp.ClientSSLError as exc:
        raise UpstreamTLSError(f"TLS verification failed for upstream {upstream}: {exc}",
                               upstream=upstream) from exc
    except aiohttp.ClientError as exc:
        if reading:
            raise UpstreamBodyError(f"upstream {upstream} broke off the body of {url}: {exc}",
                                    upstream=upstream) from exc
        raise UpstreamUnavailableError(f"cannot reach upstream {upstream} for {url}: {exc}",
                                       upstream=upstream) from exc


def _auth_header(settings: UpstreamSettings, environ: Mapping[str, str]) -> str | None:
    auth = settings.auth
    if auth is None:
        return None
    if auth.token_env:
        token = environ.get(auth.token_env)
        return f"Bearer {token}" if token else None
    if auth.username_env and auth.password_env:
        user = environ.get(auth.username_env, "")
        password = environ.get(auth.password_env, "")
        if not user:
            return None
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return f"Basic {raw}"
    return None

