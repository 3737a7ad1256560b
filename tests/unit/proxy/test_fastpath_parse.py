"""The fast path's reading of a request: whatever it takes, aiohttp's own parser reads
as exactly that one request with nothing left over; what it is not sure of, it leaves,
and what it read before never changes how it reads the next."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from stockade.proxy.fastpath import Reader

_PATH = "/pypi/files/demo/demo-1.0-py3-none-any.whl"


def _aiohttp_reads(data: bytes) -> list[tuple[object, object]] | None:
    """The messages aiohttp's parser makes of ``data`` (None: it refuses it)."""
    parser = HttpRequestParser(BaseProtocol(asyncio.get_running_loop()),
                               asyncio.get_running_loop(), 2**16, max_line_size=8190,
                               max_field_size=8190, max_headers=128)
    try:
        messages, upgraded, tail = parser.feed_data(data)
    except Exception:  # noqa: BLE001 - any refusal of aiohttp's is one here
        return None
    assert not upgraded
    assert tail == b""
    return list(messages)


_PLAIN = f"GET {_PATH} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


async def _same_as_aiohttp(data: bytes) -> None:
    reader = Reader(asyncio.get_running_loop())
    parsed = reader.read(data)
    # whatever it was, a plain request after it is read whole and alone
    after = reader.read(_PLAIN)
    assert after is not None
    assert after.path == _PATH
    assert list(after.headers.items()) == [("Host", "t")]
    if parsed is None:
        return
    messages = _aiohttp_reads(data)
    assert messages is not None, data
    [(message, payload)] = messages
    assert payload is EMPTY_PAYLOAD or payload.is_eof()
    assert message.method == parsed.method
    assert message.version == (1, 1)
    assert message.path == parsed.path
    assert parsed.url == URL.build(path=parsed.path, encoded=True)
    assert message.url == parsed.url
    assert list(message.headers.items()) == list(parsed.headers.items())
    assert tuple(message.raw_headers) == tuple(parsed.raw_headers)
    assert not message.should_close
    assert not message.upgrade
    assert not message.chunked
    assert message.compression is None


_LINES = [
    f"GET {_PATH} HTTP/1.1\r\n", "GET / HTTP/1.1\r\n", "HEAD / HTTP/1.1\r\n",
    "GET / HTTP/1.0\r\n", "GET /a?b HTTP/1.1\r\n", "GET /a#b HTTP/1.1\r\n",
    "GET  / HTTP/1.1\r\n", "GET http://h/ HTTP/1.1\r\n", "GET /%2f@x HTTP/1.1\r\n",
    "GET / HTTP/1.1\n", "get / HTTP/1.1\r\n",
]
_FIELDS = [
    "Host: t\r\n", "Host: a b\r\n", "Host:t\r\n", "Host: t \r\n", "Host:\t t\t\r\n",
    "User-Agent: pip/24.0 CPython\r\n", "X-Empty:\r\n", "X-Empty: \r\n",
    "Accept: */*\r\n", "Connection: keep-alive\r\n", "Connection: close\r\n",
    "Connection: Upgrade\r\n", "Upgrade: websocket\r\n", "Content-Length: 0\r\n",
    "Content-Length: 3\r\n", "Content-Length: 00\r\n", "Transfer-Encoding: chunked\r\n",
    "Expect: 100-continue\r\n", "Content-Encoding: gzip\r\n", " folded\r\n",
    "\tfolded\r\n", "X A: 1\r\n", "X-A : 1\r\n", "X-A: a\x00b\r\n", "X-A: a\tb\r\n",
    "X-A: caf\xe9\r\n", "X-A: 1\n", "X-A: 1\r", ": empty name\r\n", "X-Request-Id: r-1\r\n",
    "Authorization: Bearer stk_1\r\n", "X-A: GET / HTTP/1.1\r\n", "Host: t\r\n\r\nGET",
]
_ENDS = ["\r\n", "", "\n", "\r\nabc", "\r\n\r\n", f"\r\nGET {_PATH} HTTP/1.1\r\n\r\n"]


@given(st.sampled_from(_LINES), st.lists(st.sampled_from(_FIELDS), max_size=6),
       st.sampled_from(_ENDS))
async def test_what_it_takes_aiohttp_reads_alike(line: str, fields: list[str],
                                                 end: str) -> None:
    await _same_as_aiohttp((line + "".join(fields) + end).encode("latin-1"))


@given(st.binary(max_size=200))
async def test_any_bytes_it_takes_aiohttp_reads_alike(tail: bytes) -> None:
    await _same_as_aiohttp(b"GET / HTTP/1.1\r\nHost: t\r\n" + tail)
    await _same_as_aiohttp(b"GET / HTTP/1.1\r\n" + tail + b"\r\n\r\n")


@pytest.mark.parametrize(("data", "taken"), [
    (f"GET {_PATH} HTTP/1.1\r\nHost: t\r\n\r\n", True),
    ("GET / HTTP/1.1\r\n\r\n", False),  # no Host
    ("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", True),
    ("GET / HTTP/1.1\r\nHost: t\r\nConnection: Keep-Alive\r\n\r\n", True),
    ("GET / HTTP/1.1\r\nHost: t\r\n", False),  # partial
    ("GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", False),  # pipelined
    ("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx", False),  # a body
    ("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    ("GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n", False),
    ("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n\r\n", False),
    ("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", False),
    ("GET / HTTP/1.0\r\nHost: t\r\n\r\n", False),
    ("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", True),  # read, then left to aiohttp
    ("GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n", False),  # obs-fold
    ("GET / HTTP/1.1\r\nHost: t\r\nX-A: caf\xe9\r\n\r\n", False),  # non-ASCII
    ("GET / HTTP/1.1\r\nHost: t\r\nX A: 1\r\n\r\n", False),  # odd name
    ("GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", False),  # repeated
    ("GET /a?b=1 HTTP/1.1\r\nHost: t\r\n\r\n", False),  # a query
    ("GET / HTTP/1.1\nHost: t\n\n", False),  # bare LF
])
async def test_table(data: str, taken: bool) -> None:
    reader = Reader(asyncio.get_running_loop())
    assert (reader.read(data.encode("latin-1")) is not None) is taken
    assert reader.read(_PLAIN) is not None  # (the reader reads on, whatever it was)


async def test_one_reader_reads_on_after_what_it_left() -> None:
    """Requests it left mid-way (a body to come, a refusal, pipelined requests) leave
    nothing behind in its parser: each next plain request is read alone."""
    reader = Reader(asyncio.get_running_loop())
    for left in (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n",
                 b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
                 b"GET / HTTP/1.0\r\n\r\n", b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n"):
        assert reader.read(left) is None, left
        message = reader.read(_PLAIN)
        assert message is not None, left
        assert (message.method, message.path) == ("GET", _PATH)
