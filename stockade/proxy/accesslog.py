"""The JSON access log and the log lines' way to standard error.

Owns the access line of each request (``stockade.access``), the JSON line format of
every log record (``JsonFormatter``: an ISO 8601 UTC ``time``, level, logger, process
id, then the message or an access line's fields) and the handler that writes lines
in batches (``BufferedLineHandler``). Not the request ids (``responses``) nor which
loggers exist.

An access line is the hottest log line: one per request. Where the logging set-up
is the server's own (the access logger's records reach one ``BufferedLineHandler``
with a ``JsonFormatter``, through no filter and no other handler), the line is made
and queued directly, the same line ``Logger.handle`` would have produced, without
a ``LogRecord``; any other set-up (a test's capture, an operator's config) gets the
record through ``logging`` as ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import weakref
from asyncio import _get_running_loop
from datetime import UTC, datetime
from time import time as time_now
from typing import Any, TextIO

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from stockade.proxy.identity import Identity, identity_of
from stockade.proxy.responses import request_id_of

_ACCESS_MESSAGE = "%s %s %s %s"
# what LogRecord's relativeCreated counts from
_LOGGING_STARTED: float = logging._startTime  # type: ignore[attr-defined]
# An access line's fields after its time, as JSON without braces, by (logger, process)
_MIDDLES: dict[tuple[str, int], str] = {}
# An access record's fields that are the same on each line, by (process, thread, logger)
_RECORD_BASES: dict[tuple[int, int, str], dict[str, Any]] = {}


class _Pid:
    """This process's id, renewed in a forked child (``getpid`` is a system call)."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.value = os.getpid()


_PID = _Pid()


# The whole second of the last time written, ``2025-01-31T12:00:00.``, kept for the
# next line in the same second (``datetime.isoformat`` per line cost more than the
# encoding), and the milliseconds' endings: ``000Z`` to ``999Z``.
_SECOND: list[Any] = [-1, ""]
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def utc_time(created: float) -> str:
    """``2025-01-31T12:00:00.123Z``: milliseconds (truncated), UTC."""
    micros = round(created * 1_000_000)  # as datetime.fromtimestamp rounds
    second = micros // 1_000_000
    last = _SECOND
    if second != last[0]:
        last[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        last[0] = second
    prefix: str = last[1]
    return prefix + _MILLIS[(micros - second * 1_000_000) // 1000]


def json_line(fields: dict[str, Any]) -> str:
    """``fields`` as one compact JSON line of ASCII (non-ASCII text escaped)."""
    try:
        line = orjson.dumps(fields).decode()
    except TypeError:  # what orjson refuses (text with lone surrogates, huge ints)
        line = ""
    if not line or not line.isascii():
        line = json.dumps(fields, separators=(",", ":"), default=str)
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, each with its ISO 8601 UTC ``time``.

    An access record carries its fields as a dict (``extra={"access": ...}``),
    so the line is encoded once. ``pid`` tells worker processes apart.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": utc_time(record.created), "level": record.levelname,
                               "logger": record.name, "pid": record.process}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json_line(out)


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON object per request on the ``stockade.access`` logger."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.log_fields(_fields(request, response, time))

    def log_fields(self, fields: dict[str, Any]) -> None:
        """Log the access line of ``fields`` (``access_fields``' dict), where the access
        logger is enabled (what ``log`` does once it has read them from the request:
        the connection's fast path gives them itself)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        sink = direct_sink(logger)
        if sink is not None:  # the server's own set-up: the line made at once
            sink.add_line(self._line(fields), logging.INFO)
            return
        # The fields travel as a dict: the JSON formatter encodes the line once;
        # a plain formatter prints the short message.
        logger.handle(self._record(
            (fields["remote"], fields["method"], fields["path"], fields["status"]), fields))

    def _line(self, fields: dict[str, Any]) -> str:
        """What ``JsonFormatter`` makes of the record ``log_fields`` would make, made at
        once: the fields after the time the same on each line of a process made once."""
        where = (self.logger.name, _PID.value)
        middle = _MIDDLES.get(where)
        if middle is None:
            middle = _MIDDLES[where] = json_line(
                {"level": "INFO", "logger": where[0], "pid": where[1]})[1:-1]
        return "".join(('{"time":"', utc_time(time_now()), '",', middle, ",",
                        json_line(fields)[1:]))

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
        now = time_now()
        fields["created"] = now
        fields["msecs"] = int((now - int(now)) * 1000) + 0.0
        fields["relativeCreated"] = (now - _LOGGING_STARTED) * 1000
        fields["args"] = args
        fields["access"] = access
        return made

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def direct_sink(logger: logging.Logger) -> BufferedLineHandler | None:
    """The one handler an INFO record of ``logger`` would reach, where it is a
    ``BufferedLineHandler`` formatting with ``JsonFormatter`` and no filter, record
    factory or other handler is on the way (the server's own set-up); else None."""
    if logging.getLogRecordFactory() is not logging.LogRecord or logger.disabled:
        return None
    found: BufferedLineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            if found is not None or len(current.handlers) != 1:
                return None
            handler = current.handlers[0]
            if (type(handler) is not BufferedLineHandler or handler.filters
                    or handler.level > logging.INFO
                    or type(handler.formatter) is not JsonFormatter):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


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
        self._add(line, record.levelno)

    def add_line(self, line: str, level: int) -> None:
        """Queue a line already formatted (as ``handle`` would, holding the lock)."""
        assert self.lock is not None  # (made by Handler.__init__)
        with self.lock:  # as acquire() and release(), without their two calls
            self._add(line, level)

    def _add(self, line: str, level: int) -> None:
        self._lines.append(line)
        if level >= self.flush_level or len(self._lines) >= self.capacity:
            self.flush()
            return
        loop = _get_running_loop()
        if loop is None:  # nothing here would write it later
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


def _fields(request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> dict[str, Any]:
    """An access line's own fields, in their order."""
    # (the path as the client sent it: the parsed URL's path_qs is rebuilt by yarl)
    return access_fields(request_id_of(request), request.remote, request.method,
                         request.raw_path, response.status, response.body_length, time,
                         request.headers.get("User-Agent", ""),
                         response.headers.get("X-Stockade-Cache", ""), identity_of(request))


def access_fields(request_id: str, remote: str | None, method: str, path: str,
                  status: int, sent: int, time: float, user_agent: str, cache: str,
                  who: Identity | None) -> dict[str, Any]:
    """The access line's own fields, in their order, of an answer of ``sent`` bytes
    given in ``time`` seconds (``cache``: its ``X-Stockade-Cache``; ``who``: the
    caller's identity, None when anonymous)."""
    return {
        "request_id": request_id,
        "remote": remote,
        "method": method,
        "path": path,
        "status": status,
        "bytes": sent,
        "duration_s": round(time, 6),
        "user_agent": user_agent,
        "cache": cache,
        # who asked, by the token's name and team; never the token (null: anonymous)
        "identity": who.name if who is not None else None,
        "team": who.team if who is not None else None,
    }
