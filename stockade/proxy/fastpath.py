"""The connection's fast path: a warm memo's hit answered below aiohttp's request
machinery (``server.fast_path``).

Owns ``parse`` (one chunk of bytes read as exactly one plain request: a GET or HEAD in
HTTP/1.1, origin-form, no body, nothing that changes how the connection goes on;
anything else is None) and ``FastPath``, which answers such a GET where aiohttp's
protocol is idle (waiting for a request, none queued or in flight, the transport's
buffer empty) and the warm memo answered a GET of the same raw path before. The
request is made as aiohttp makes it (its ``Request``, with the route the router
matched for that path), then given what the middleware gives it (its request id, the
``Host`` check, the access check), answered by the memo where it can be without a
coroutine (``WarmMemo.answer_now``: every decision made and counted, the blob's file
checked, the served-artifacts record), counted, written with one ``transport.write``
and logged, with the functions the slow path calls. A request the fast path cannot
answer so goes to aiohttp untouched: the caller's business (``serving``).

Not the answer's making (``warmmemo``, ``pipeline``, ``prepared``), nor the
connection's limits (``serving``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import EMPTY_PAYLOAD
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from stockade.proxy.admission import caller
from stockade.proxy.auth import ACCESS
from stockade.proxy.metrics import Metrics
from stockade.proxy.responses import REQUEST_ID, host_problem, request_counter, request_id_for
from stockade.proxy.warmmemo import WarmMemo, hot_route

logger = logging.getLogger(__name__)

MAX_BYTES = 16 * 1024  # a request longer than this is aiohttp's
MAX_FIELDS = 64
# The request line: a GET (or a HEAD, read whole but left to aiohttp) of an origin-form
# target of path characters (no query, no fragment), in HTTP/1.1, single spaces, CRLF.
_REQUEST_LINE = re.compile(rb"(GET|HEAD) (/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*) HTTP/1\.1\r\n")
# A header field: a token, a colon, a value of visible ASCII with single spaces inside,
# optional blanks around it, CRLF (no obs-fold, no control, no other byte).
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*"
                    rb"((?:[\x21-\x7e]+ )*[\x21-\x7e]+)?[ \t]*\r\n")
# Fields that make a request something else than one plain GET with no body, each with
# the one value it may have (None: none).
_RULED: dict[bytes, bytes | None] = {
    b"content-length": b"0", b"transfer-encoding": None, b"expect": None,
    b"upgrade": None, b"connection": b"keep-alive", b"content-encoding": None,
}


class Parsed(NamedTuple):
    """A plain GET or HEAD: its raw path and header fields, as aiohttp's parser gives
    them."""

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    raw_headers: tuple[tuple[bytes, bytes], ...]


def parse(data: bytes) -> Parsed | None:
    """``data`` as exactly one complete plain GET or HEAD (see the module docstring);
    None where it is anything else or more, or less."""
    if len(data) > MAX_BYTES or not data.endswith(b"\r\n\r\n"):
        return None
    line = _REQUEST_LINE.match(data)
    if line is None:
        return None
    pos, end = line.end(), len(data) - 2
    raw: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    while pos < end:
        field = _FIELD.match(data, pos)
        if field is None or len(raw) == MAX_FIELDS:
            return None
        name, value = field.group(1), field.group(2) or b""
        lower = name.lower()
        if lower in seen:
            return None  # repeated: aiohttp refuses some, joins none
        seen.add(lower)
        if lower in _RULED and value.lower() != _RULED[lower]:
            return None
        raw.append((name, value))
        pos = field.end()
    if pos != end or b"host" not in seen:  # (aiohttp refuses HTTP/1.1 without one)
        return None
    # (from a list: a generator cost CIMultiDict twice the time, 1.0 us to 0.5)
    headers = CIMultiDict([(name.decode("ascii"), value.decode("ascii"))
                           for name, value in raw])
    return Parsed(line.group(1).decode("ascii"), line.group(2).decode("ascii"),
                  CIMultiDictProxy(headers), tuple(raw))


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
        self._access = app[ACCESS]
        self.answered = 0  # requests answered here (tests read it)
        self.broken = False  # an answer failed before its write: aiohttp's from then on

    def take(self, protocol: web.RequestHandler, data: bytes) -> bool | None:
        """Answer the request that ``data``, all the bytes of one read, is on
        ``protocol``'s connection: True where it did; False where it did nothing and
        aiohttp is to be given ``data``; None, the same, where ``data`` is not exactly
        one plain request (aiohttp may then hold part of a request: the connection is
        aiohttp's from then on)."""
        if self.broken:
            return False
        parsed = parse(data)
        if parsed is None:
            return None
        written = self.answered
        try:
            return self.answer(protocol, parsed)
        except Exception:
            if self.answered != written:  # answered; what failed came after the write
                logger.exception("fast path: failed after answering %s", parsed.path)
                return True
            # (aiohttp's internals this reads changed, say): the request and every one
            # after it served the slow way, never a connection dropped or a 500
            logger.exception("fast path: failed before answering %s; turned off in this "
                             "process", parsed.path)
            self.broken = True
            return False

    def answer(self, protocol: web.RequestHandler, parsed: Parsed) -> bool:
        """Answer ``parsed`` on ``protocol``'s connection, or do nothing and say so
        (False: aiohttp is then given the request)."""
        memo = self._memo_of(self._app)
        if (parsed.method != "GET" or memo is None or not idle(protocol)
                or self._app.on_response_prepare):
            return False  # (a hook on each answer's head: aiohttp's path calls it)
        match = memo.route(parsed.path)
        host = parsed.headers.get("Host")
        if match is None or host is None or host_problem(host) is not None:
            return False
        loop = protocol._loop
        start = loop.time() if protocol._logging_enabled else None
        message = RawRequestMessage(
            "GET", parsed.path, HttpVersion11, parsed.headers, parsed.raw_headers, False,
            None, False, False, URL.build(path=parsed.path, encoded=True))
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
        page = hot_route(match.route.name)
        if page is None or not self._access.admits(request):
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
        if start is not None:
            protocol.log_access(request, response, start)
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
