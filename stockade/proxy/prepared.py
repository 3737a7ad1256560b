"""Answers whose header lines are made once: the warm memo's held blobs and pages.

Owns ``PreparedResponse``, a ``web.Response`` carrying its header lines serialized
when the memo's entry was made (``PreparedHead``). A plain GET over a kept-alive
HTTP/1.1 connection is answered with the status line, those lines, the ``Date`` and
the request id written in front of the body in one write, where aiohttp would build
and serialize every header again. Anything else takes aiohttp's own path, with the
same headers: HEAD, HTTP/1.0, a connection to close, another status, compression,
cookies, a header changed or added since (other than the request id), a body of
another length.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.compression_utils import MAX_SYNC_CHUNK_SIZE
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict, getversion

_STATUS_LINE = b"HTTP/1.1 200 OK\r\n"
_REQUEST_ID = "X-Request-Id"
_REQUEST_ID_NAME = b"X-Request-Id: "
# what aiohttp sets on an answer itself
_AIOHTTPS = frozenset({"content-length", "date", "server", "connection",
                       "transfer-encoding", "set-cookie"})


class PreparedHead(NamedTuple):
    """A 200's headers, as given and serialized, for a body of ``length`` bytes."""

    items: tuple[tuple[str, str], ...]
    headers: CIMultiDict[str]  # copied into each answer
    lines: bytes  # the header lines aiohttp would write, but Date: ``Name: value\r\n``...
    length: int


def prepared_head(headers: Iterable[tuple[str, str]], length: int) -> PreparedHead | None:
    """The head of a 200 with ``headers`` and a body of ``length`` bytes; None where
    a header is one aiohttp sets itself or a value cannot be written as it is."""
    items = tuple(headers)
    if {name.lower() for name, _ in items} & _AIOHTTPS:
        return None
    lines = [f"{name}: {value}\r\n" for name, value in items]
    lines += [f"Content-Length: {length}\r\n", f"Server: {SERVER_SOFTWARE}\r\n"]
    if not all(_writable(line[:-2]) for line in lines):
        return None
    return PreparedHead(items, CIMultiDict(items), "".join(lines).encode("ascii"), length)


def plain_head(head: PreparedHead, request_id: str) -> bytes:
    """``head_bytes`` with the request id ``request_id``, one of ``responses``' safe
    ids (letters, digits, ``._-``: written as it is)."""
    return head_bytes(head, b"".join((_REQUEST_ID_NAME, request_id.encode("ascii"),
                                      b"\r\n")))


def head_bytes(head: PreparedHead, request_id_line: bytes) -> bytes:
    """The status line and header lines of a 200 with ``head``, its ``Date`` now and
    ``request_id_line`` (``X-Request-Id: ...\\r\\n``, or b""), up to the body."""
    return b"".join((_STATUS_LINE, head.lines, b"Date: ",
                     rfc822_formatted_time().encode("ascii"), b"\r\n", request_id_line,
                     b"\r\n"))


def _version(headers: CIMultiDict[str]) -> int:
    """A number that changes with every change of ``headers``."""
    return getversion(headers)  # type: ignore[arg-type]  # (its stub takes object values)


def _writable(line: str) -> bool:
    return line.isascii() and line.isprintable()  # no CR, LF or other control


class PreparedResponse(web.Response):
    """A 200 whose head was made before (see the module docstring). The request id
    is given to it (``request_id``), not added to its headers, which stay the head's."""

    def __init__(self, head: PreparedHead, body: bytes) -> None:
        # web.Response's set-up for a bytes body and headers as given, without its
        # argument checks (a Content-Type from text or content_type, a payload for
        # another body): a third of this answer's making, 2 us of each memo hit
        web.StreamResponse.__init__(self, _real_headers=head.headers.copy())
        self._body = body
        self._zlib_executor_size = MAX_SYNC_CHUNK_SIZE
        self._zlib_executor = None
        self._head = head
        self._made = _version(self._headers)  # changed since: aiohttp's path
        self.request_id: str | None = None

    async def _start(self, request: web.BaseRequest) -> AbstractStreamWriter:
        head = self._head
        writer = request._payload_writer
        line = self._request_id_line()
        if (line is None or request.method != hdrs.METH_GET
                or request.version != HttpVersion11 or not request.keep_alive
                or self.status != 200 or self._compression or self._cookies
                or self._chunked or type(writer) is not StreamWriter
                or writer._on_headers_sent is not None
                or not isinstance(self._body, bytes) or len(self._body) != head.length):
            self._own_request_id()
            return await super()._start(request)
        self._req = request
        self._payload_writer = writer
        await request._prepare_hook(self)
        if _version(self._headers) != self._made:  # a hook changed them
            self._own_request_id()
            self._headers[hdrs.CONTENT_LENGTH] = str(head.length)
            await self._prepare_headers()  # aiohttp's head (its hook already called)
            await self._write_headers()
            return writer
        self._keep_alive = True
        writer.length = head.length
        # what writer.write_headers leaves: the head, written with the body at write_eof
        writer._headers_buf = head_bytes(head, line)
        writer._headers_written = False
        return writer

    def head_now(self) -> bytes | None:
        """The status line and header lines of this answer to a plain GET on a kept-alive
        HTTP/1.1 connection, as ``_start`` would write them; None where ``_start`` would
        take aiohttp's path (a header changed, the request id cannot be written)."""
        line = self._request_id_line()
        if (line is None or self.status != 200 or self._compression or self._cookies
                or self._chunked or not isinstance(self._body, bytes)
                or len(self._body) != self._head.length):
            return None
        return head_bytes(self._head, line)

    def _request_id_line(self) -> bytes | None:
        """The request id's header line (b"" without one) where the headers are still
        the head's; None where they are not or the id cannot be written as it is."""
        if _version(self._headers) != self._made:
            return None
        if self.request_id is None:
            return b""
        line = f"{_REQUEST_ID}: {self.request_id}"
        return (line + "\r\n").encode("ascii") if _writable(line) else None

    def _own_request_id(self) -> None:
        if self.request_id is not None:
            self._headers[_REQUEST_ID] = self.request_id
            self.request_id = None
