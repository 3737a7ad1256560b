"""Turning verdicts and errors into HTTP answers, in one place.

Owns the refusal format of the contract (403, reason phrase starting with
``Blocked by stockade:``, npm's JSON ``error`` field, a plain-text body for the
others), the error middleware, request ids, per-route metrics and the JSON
access log. Handlers raise or return verdicts; only this module writes errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware
from yarl import URL

from stockade.policy.model import Verdict
from stockade.proxy.errors import ProxyError, RefusedError
from stockade.proxy.identity import identity_of
from stockade.proxy.metrics import Metrics
from stockade.storage.errors import (
    BlobNotFoundError,
    ReadOnlyStorageError,
    StorageError,
    StorageFullError,
)

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("stockade.access")

# A released artifact never changes its bytes under one URL: clients may keep it.
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
REQUEST_ID = web.RequestKey("request_id", str)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A host name or IPv4 address (letters, digits, ``.-_~``) or a bracketed IPv6
# literal, then an optional port: what absolute URLs in metadata can be built from.
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{1,5}))?")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ACCESS_MESSAGE = "%s %s %s %s"
# what LogRecord's relativeCreated counts from
_LOGGING_STARTED: float = logging._startTime  # type: ignore[attr-defined]
# An access record's fields that are the same on each line, by (process, thread, logger)
_RECORD_BASES: dict[tuple[int, int, str], dict[str, Any]] = {}


class _RequestIds:
    """Request ids unique across processes without a system call each: a random
    per-process prefix (renewed in a forked child) and a counter. ``uuid4`` cost 5% of
    a warm 22 KB request."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):010x}"


_new_request_id = _RequestIds()


def reason_phrase(text: str) -> str:
    """A single-line ASCII reason phrase (the status line cannot carry more)."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:400]


def route_labels(request: web.Request) -> tuple[str, str]:
    """(ecosystem, kind) from the route name ``ecosystem:kind``."""
    route = request.match_info.route
    name = route.name or "other:other"
    eco, _, kind = name.partition(":")
    return eco, kind or "other"


def _body(request: web.Request, status: int, sentence: str) -> web.Response:
    eco, _ = route_labels(request)
    if eco == "npm" or eco == "admin":
        body = json.dumps({"error": sentence}) + "\n"
        ctype = "application/json"
    else:
        body, ctype = sentence + "\n", "text/plain"
    return web.Response(
        status=status, reason=reason_phrase(sentence), text=body, content_type=ctype,
        headers={"Cache-Control": "no-store"},
    )


def refusal(request: web.Request, verdict: Verdict) -> web.Response:
    """The contract's 403 for a verdict that blocks."""
    response = _body(request, 403, verdict.refusal_phrase())
    response.headers["X-Stockade-Rule"] = reason_phrase(verdict.rule)
    return response


def error_response(request: web.Request, status: int, sentence: str) -> web.Response:
    """An error answer in the form the route's clients read."""
    return _body(request, status, sentence)


@functools.lru_cache(maxsize=1024)  # pure; a server sees few distinct Host values
def host_problem(host: str) -> str | None:
    """Why a Host header value cannot name this server in a URL, or None when it can.

    Handlers build absolute URLs from the request's origin; a Host that yarl
    cannot parse (``a:b``, a port past 65535, a broken IPv6 literal) would fail
    deep inside a handler, and one with spaces would end up in served metadata.
    """
    match = _HOST.fullmatch(host)
    if match is None or (match.group(2) is not None and int(match.group(2)) > 65535):
        return f"the Host header {host!r} is not a host name with an optional port"
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(match.group(1))
        except ValueError:
            return f"the Host header {host!r} is not a valid IPv6 address"
    try:
        # As aiohttp builds request.url; str() is where yarl parses the port.
        str(URL.build(scheme="http", authority=host).origin())
    except ValueError as exc:
        return f"the Host header {host!r} cannot be used in a URL: {exc}"
    return None


def make_middleware(metrics: Metrics) -> Middleware:
    """Request id, error rendering and request metrics for every route."""

    # labels() takes a lock and checks its arguments each call: the children are
    # kept per (ecosystem, kind, status), a handful per route.
    counted: dict[tuple[str, str, int], Any] = {}
    timed: dict[tuple[str, str], Any] = {}

    def count(request: web.Request, status: int, started: float | None) -> None:
        eco, kind = route_labels(request)
        child = counted.get((eco, kind, status))
        if child is None:
            child = counted[eco, kind, status] = metrics.requests.labels(eco, kind, str(status))
        child.inc()
        if started is not None:
            timer = timed.get((eco, kind))
            if timer is None:
                timer = timed[eco, kind] = metrics.request_duration.labels(eco, kind)
            timer.observe(time.perf_counter() - started)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else _new_request_id()
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            host = request.headers.get("Host")
            # Without a Host (HTTP/1.0) aiohttp falls back to the local host name.
            bad_host = host_problem(host) if host is not None else None
            if bad_host is not None:
                response = error_response(request, 400, bad_host)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            count(request, exc.status, None)
            exc.headers["X-Request-Id"] = request_id
            raise
        except RefusedError as exc:
            response = refusal(request, exc.verdict)
        except ProxyError as exc:
            response = error_response(request, exc.status, exc.diagnostics())
        except StorageFullError as exc:
            response = error_response(request, 507, exc.diagnostics())
        except BlobNotFoundError as exc:
            response = error_response(request, 404, exc.diagnostics())
        except ReadOnlyStorageError as exc:
            response = error_response(request, 503, exc.diagnostics())
        except StorageError as exc:
            logger.error("storage failure on %s: %s", request.path, exc)
            response = error_response(request, 500, exc.diagnostics())
        count(request, response.status, started)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response

    return middleware


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON object per request on the ``stockade.access`` logger."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        record = {
            "request_id": request.get(REQUEST_ID, ""),
            "remote": request.remote,
            "method": request.method,
            # as the client sent it: the parsed URL's path_qs is rebuilt by yarl each time
            "path": request.raw_path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_s": round(time, 6),
            "user_agent": request.headers.get("User-Agent", ""),
            "cache": response.headers.get("X-Stockade-Cache", ""),
        }
        who = identity_of(request)
        # who asked, by the token's name and team; never the token (null: anonymous)
        record["identity"] = who.name if who is not None else None
        record["team"] = who.team if who is not None else None
        # The fields travel as a dict: the JSON formatter encodes the line once;
        # a plain formatter prints the short message.
        self.logger.handle(self._record(
            (record["remote"], record["method"], record["path"], record["status"]), record))

    def _record(self, args: tuple[Any, ...], access: dict[str, Any]) -> logging.LogRecord:
        """The record ``Logger.info`` would make, without its walk up the stack for the
        caller, and with what is the same on every line of this process and thread
        (level name, file, thread and process names: ``LogRecord.__init__`` looked
        them up per line, a third of the line's cost) copied from the first."""
        logger = self.logger
        if logging.getLogRecordFactory() is not logging.LogRecord:
            return logger.makeRecord(logger.name, logging.INFO, __file__, 0, _ACCESS_MESSAGE,
                                     args, None, extra={"access": access})
        where = (os.getpid(), threading.get_ident(), logger.name)
        base = _RECORD_BASES.get(where)
        if base is None:  # (aiohttp makes an access logger per connection: kept here)
            first = logger.makeRecord(logger.name, logging.INFO, __file__, 0,
                                      _ACCESS_MESSAGE, (), None)
            base = _RECORD_BASES[where] = dict(first.__dict__)
        made = logging.LogRecord.__new__(logging.LogRecord)
        fields = made.__dict__
        fields.update(base)
        now = time.time()
        fields["created"] = now
        fields["msecs"] = int((now - int(now)) * 1000) + 0.0
        fields["relativeCreated"] = (now - _LOGGING_STARTED) * 1000
        fields["args"] = args
        fields["access"] = access
        return made

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class BufferedLineHandler(logging.StreamHandler[TextIO]):
    """Log lines written to the stream together rather than one write and flush each.

    A line logged on a thread running an event loop (a request's access line) is kept
    in memory and written, in order with the lines before it, when ``capacity`` lines
    wait, ``interval_s`` after the first of them (a timer on that loop; 0, the default:
    at the loop's next turn, once the requests whose events came together are all
    answered, so a line is never later than its loop's current turn), when a line of
    ``flush_level`` or more is logged, at ``flush()`` (``logging.shutdown``: at exit, and
    in a worker before it ends, so a clean stop by SIGTERM or SIGINT loses none) and
    before the process forks (a child would write its parent's lines again). A line
    logged where no event loop runs (the supervisor, a thread) is written at once, with
    those waiting before it. A per-line write and flush cost a warm 22 KB request a
    tenth of its time.
    """

    def __init__(self, stream: TextIO, *, capacity: int = 256, interval_s: float = 0.0,
                 flush_level: int = logging.WARNING) -> None:
        super().__init__(stream)
        self.capacity = capacity
        self.interval_s = interval_s
        self.flush_level = flush_level
        self._lines: list[str] = []
        self._timer: asyncio.Handle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: _flush_ref(ref),
                            after_in_child=lambda: _forget_ref(ref))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - as StreamHandler: a bad line is reported
            self.handleError(record)
            return
        self._lines.append(line)
        if record.levelno >= self.flush_level or len(self._lines) >= self.capacity:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # nothing here would write it later
            self.flush()
            return
        # (a timer of a loop that has ended would never come: one on this loop is set)
        if self._timer is None or self._timer_loop is not loop:
            self._timer_loop = loop
            self._timer = (loop.call_later(self.interval_s, self._due) if self.interval_s > 0
                           else loop.call_soon(self._due))

    def _due(self) -> None:
        self.acquire()
        try:
            self._timer = self._timer_loop = None
            self.flush()
        finally:
            self.release()

    def flush(self) -> None:
        self.acquire()
        try:
            lines, self._lines = self._lines, []
            # a closed or broken stream loses the lines, never raises where they are
            # logged (a logging call must not fail the code that made it)
            with contextlib.suppress(OSError, ValueError):
                if lines and self.stream is not None:
                    self.stream.write(self.terminator.join(lines) + self.terminator)
                super().flush()
        finally:
            self.release()

    def forget(self) -> None:
        """Drop what waits and the timer, unwritten (in a forked child: its parent's)."""
        self._lines = []
        self._timer = self._timer_loop = None


def _flush_ref(ref: weakref.ref[BufferedLineHandler]) -> None:
    handler = ref()
    if handler is not None:
        handler.flush()


def _forget_ref(ref: weakref.ref[BufferedLineHandler]) -> None:
    handler = ref()
    if handler is not None:
        handler.forget()
