"""The connection's fast path: a warm memo's hit answered below aiohttp's request
machinery (``server.fast_path``).

Owns ``Reader`` (one chunk of bytes read as exactly one plain request by aiohttp's
own parser: a GET or HEAD in HTTP/1.1, origin-form, no body, nothing that changes how
the connection goes on; anything else is None) and ``FastPath``, which answers such a
GET where aiohttp's protocol is idle (waiting for a request, none queued or in flight,
the transport's buffer empty) and the warm memo answered a GET of the same raw path
before. The request is made as aiohttp makes it (its ``Request``, with the route the
router matched for that path), then given what the middleware gives it (its request id,
the ``Host`` check, the access check), answered by the memo where it can be without a
coroutine (``WarmMemo.answer_now``: every decision made and counted, the blob's file
checked, the served-artifacts record), counted, written with one ``transport.write``
and logged, with the functions the slow path calls. An anonymous GET of an artifact
(no ``Authorization``, ``Range`` or ``If-None-Match``, on a route open to all) needs
nothing of a ``Request`` that its message does not say: it is answered without one
(``WarmMemo.answer_plain``), with the same decisions, checks, record, counts and
access line. A request the fast path cannot answer so goes to aiohttp untouched: the
caller's business (``serving``).

Not the answer's making (``warmmemo``, ``pipeline``, ``prepared``), nor the
connection's limits (``serving``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import hdrs, web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import HttpRequestParser, RawRequestMessage
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestPayloadError

from stockade.proxy.accesslog import JsonAccessLogger, access_fields
from stockade.proxy.admission import caller
from stockade.proxy.auth import ACCESS
from stockade.proxy.metrics import Metrics
from stockade.proxy.prepared import plain_head
from stockade.proxy.responses import (
    REQUEST_ID,
    host_problem,
    request_counter,
    request_id_for,
    request_id_from,
    route_counter,
)
from stockade.proxy.warmmemo import WarmMemo, hot_route

logger = logging.getLogger(__name__)

MAX_BYTES = 16 * 1024  # a request longer than this is aiohttp's
MAX_FIELDS = 64
# Fields that make a request something else than one plain GET with no body, each with
# the one value it may have (None: none).
_RULED: dict[bytes, bytes | None] = {
    b"content-length": b"0", b"transfer-encoding": None, b"expect": None,
    b"upgrade": None, b"connection": b"keep-alive", b"content-encoding": None,
}
_END = b"\r\n\r\n"


class Reader:
    """Reads a chunk of bytes as exactly one plain GET or HEAD (see the module
    docstring) with aiohttp's own request parser, set as the server's protocol sets
    its own (aiohttp's defaults): what is taken is what aiohttp's path would have read,
    with nothing of the connection's parser touched. One per process; a parser left
    mid-message (a body, an error) is replaced."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = self._new()

    def _new(self) -> HttpRequestParser:
        # (a protocol of its own: a request with a body makes its payload reader here,
        # never on a connection's protocol)
        return HttpRequestParser(BaseProtocol(self._loop), self._loop, 2**16,
                                 max_line_size=8190, max_field_size=8190, max_headers=128,
                                 payload_exception=RequestPayloadError)

    def read(self, data: bytes) -> RawRequestMessage | None:
        """``data`` as exactly one complete plain GET or HEAD; None where it is anything
        else or more, or less."""
        # (one end of the head, at the end: nothing after it, no request in pieces)
        if (len(data) > MAX_BYTES or data.find(_END) != len(data) - 4
                or not data.isascii()):
            return None
        try:
            messages, upgraded, _ = self._parser.feed_data(data)
        except Exception:  # noqa: BLE001 - any refusal of aiohttp's: its path answers it
            self._parser = self._new()
            return None
        if upgraded or len(messages) != 1 or messages[0][1] is not EMPTY_PAYLOAD:
            self._parser = self._new()
            return None
        message = messages[0][0]
        if (message.should_close or message.version != HttpVersion11 or message.upgrade
                or message.chunked or message.compression is not None):
            self._parser = self._new()  # (whatever it reads next, a fresh one reads)
            return None
        raw = message.raw_headers
        path = message.path
        if (message.method not in _READS or len(raw) > MAX_FIELDS
                or not path.startswith("/") or "?" in path or "#" in path):
            return None
        names = set()
        for name, value in raw:
            lower = name.lower()
            rule = _RULED.get(lower, _FREE)
            if rule is not _FREE and value.lower() != rule:
                return None
            names.add(lower)
        if len(names) != len(raw):
            return None  # repeated: aiohttp refuses some, joins none
        return message


_FREE = b""  # (no field's one value)
_READS = frozenset({"GET", "HEAD"})


def idle(protocol: web.RequestHandler) -> bool:
    """Whether aiohttp's ``protocol`` waits for a request with none queued, in flight or
    partly read, and its connection is to be kept."""
    waiter = protocol._waiter
    transport = protocol.transport
    return (waiter is not None and not waiter.done() and not protocol._messages
            and not protocol._request_in_progress and protocol._payload_parser is None
            and not protocol._upgraded and not protocol._force_close
            and not protocol._close and protocol._keepalive and transport is not None
            and not transport.is_closing() and not transport.get_write_buffer_size())


class FastPath:
    """Answers what it can of one application's requests (see the module docstring)."""

    def __init__(self, app: web.Application, *,
                 memo_of: Callable[[web.Application], WarmMemo | None],
                 metrics: Metrics) -> None:
        self._app = app
        self._memo_of = memo_of
        self._count = request_counter(metrics)
        self._count_route = route_counter(metrics)
        self._access = app[ACCESS]
        self.answered = 0  # requests answered here (tests read it)
        self.broken = False  # an answer failed before its write: aiohttp's from then on
        self._reader: Reader | None = None  # made on the loop, at the first read

    def take(self, protocol: web.RequestHandler, data: bytes) -> bool | None:
        """Answer the request that ``data``, all the bytes of one read, is on
        ``protocol``'s connection: True where it did; False where it did nothing and
        aiohttp is to be given ``data``; None, the same, where ``data`` is not exactly
        one plain request (aiohttp may then hold part of a request: the connection is
        aiohttp's from then on)."""
        if self.broken:
            return False
        reader = self._reader
        if reader is None:
            reader = self._reader = Reader(protocol._loop)
        message = reader.read(data)
        if message is None:
            return None
        written = self.answered
        try:
            return self.answer(protocol, message)
        except Exception:
            if self.answered != written:  # answered; what failed came after the write
                logger.exception("fast path: failed after answering %s", message.path)
                return True
            # (aiohttp's internals this reads changed, say): the request and every one
            # after it served the slow way, never a connection dropped or a 500
            logger.exception("fast path: failed before answering %s; turned off in this "
                             "process", message.path)
            self.broken = True
            return False

    def answer(self, protocol: web.RequestHandler, message: RawRequestMessage) -> bool:
        """Answer ``message`` on ``protocol``'s connection, or do nothing and say so
        (False: aiohttp is then given the request)."""
        memo = self._memo_of(self._app)
        if (message.method != "GET" or memo is None or not idle(protocol)
                or self._app.on_response_prepare):
            return False  # (a hook on each answer's head: aiohttp's path calls it)
        match = memo.route(message.path)
        host = message.headers.get("Host")
        if match is None or host is None or host_problem(host) is not None:
            return False
        loop = protocol._loop
        start = loop.time() if protocol._logging_enabled else None
        route = match.route.name
        page = hot_route(route)
        if page is None:
            return False
        headers = message.headers
        if (page is False and hdrs.AUTHORIZATION not in headers
                and hdrs.RANGE not in headers and hdrs.IF_NONE_MATCH not in headers
                and self._access.lets_in_anonymous(route)
                and (start is None or type(protocol.access_logger) is JsonAccessLogger)):
            return self._answer_plain(protocol, message, memo, route, start)
        factory = protocol._request_factory
        assert factory is not None
        task = protocol._task_handler
        assert task is not None
        request = factory(message, EMPTY_PAYLOAD, protocol, StreamWriter(protocol, loop),
                          task)
        assert isinstance(request, web.Request)
        request._match_info = match
        # as the middleware: request id, Host, access, then the memo
        request_id = request_id_for(request)
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        # (no credential and a route open to all: nothing for the check to read or set)
        if ((hdrs.AUTHORIZATION in headers
             or not self._access.lets_in_anonymous(route))
                and not self._access.admits(request)):
            return False
        who = caller(request)
        response = memo.answer_now(request, memo.key(request, who, page), who)
        if response is None:
            return False
        response.request_id = request_id
        head = response.head_now()
        assert head is not None  # (a safe request id, the head's own headers)
        self._count(request, response.status, started)
        body = response.body
        assert isinstance(body, bytes)
        transport = protocol.transport
        assert transport is not None
        self.answered += 1  # (before the write: ``take`` reads it)
        transport.write(head + body)
        response._body_length = len(head) + len(body)  # as aiohttp's writer counts it
        log = protocol.access_logger
        if start is not None and log is not None:  # (protocol.log_access, one call less)
            log.log(request, response, loop.time() - start)
        _kept_alive(protocol)
        return True

    def _answer_plain(self, protocol: web.RequestHandler, message: RawRequestMessage,
                      memo: WarmMemo, route: str | None, start: float | None) -> bool:
        """``answer`` for an anonymous GET of an artifact, without ``Range`` or
        ``If-None-Match``, on a route open to all (so the access check has nothing to
        read or set), logged by the server's access logger: the same answer, record,
        counts and access line, from what the request says, without making aiohttp's
        ``Request`` (nothing here reads more of it)."""
        request_id = request_id_from(message.headers)
        started = time.perf_counter()
        peer = protocol.peername  # (as Request.remote reads it)
        remote = (None if peer is None
                  else str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer))
        answer = memo.answer_plain(message.path, remote or "")
        if answer is None:
            return False
        prepared, body = answer
        # (the PreparedResponse's head: a safe request id, its own headers, a 200)
        head = plain_head(prepared, request_id)
        self._count_route(route, 200, started)
        transport = protocol.transport
        assert transport is not None
        self.answered += 1  # (before the write: ``take`` reads it)
        transport.write(head + body)
        log = protocol.access_logger
        if start is not None and isinstance(log, JsonAccessLogger):
            # (the bytes as aiohttp's writer counts them)
            log.log_fields(access_fields(
                request_id, remote, "GET", message.path, 200, len(head) + len(body),
                protocol._loop.time() - start, message.headers.get("User-Agent", ""),
                prepared.headers.get("X-Stockade-Cache", ""), None))
        _kept_alive(protocol)
        return True


def _kept_alive(protocol: web.RequestHandler) -> None:
    """What aiohttp's protocol does once it answered a request it keeps the connection
    for: the request counted, the keep-alive timer started again."""
    protocol._request_count += 1
    manager = protocol._manager
    if manager is not None:
        manager.requests_count += 1
    timeout = protocol._keepalive_timeout
    if timeout:
        loop = protocol._loop
        close_time = loop.time() + timeout
        protocol._next_keepalive_close_time = close_time
        if protocol._keepalive_handle is None:
            protocol._keepalive_handle = loop.call_at(close_time,
                                                      protocol._process_keepalive)
