"""The warm memo's answers with their header lines made once (``proxy.prepared``).

A plain GET of a held blob or a remembered page is written from the head kept with
the memo's entry, not serialized by aiohttp again; HEAD, HTTP/1.0 and a connection
the client closes take aiohttp's path, with what it adds (``Connection``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import http_writer, web
from aiohttp.test_utils import TestClient

from stockade.proxy.prepared import PreparedResponse, prepared_head
from stockade.proxy.state import SERVICES
from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory


@pytest.fixture
def serialized(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The status lines of the heads aiohttp serializes itself."""
    lines: list[str] = []
    real = http_writer._serialize_headers

    def counting(status_line: str, headers: Any) -> bytes:
        if status_line.startswith("HTTP/"):  # an answer's (not the test client's request)
            lines.append(status_line)
        return real(status_line, headers)

    monkeypatch.setattr(http_writer, "_serialize_headers", counting)
    return lines


async def _raw(client: TestClient, request: bytes) -> bytes:
    """The whole answer to ``request`` sent on a new connection the server closes."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()


def _head(answer: bytes) -> dict[str, str]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return {"status": head[0], **fields}


async def _warm(client: TestClient, path: str, **headers: str) -> None:
    memo = client.server.app[SERVICES].warm
    assert memo is not None
    hits = memo.hits
    for _ in range(5):
        resp = await client.get(path, headers=headers)
        assert resp.status == 200
        await resp.read()
        if memo.hits > hits:
            return
    raise AssertionError(f"{path} never answered from the memo")


async def _warm_wheel(fake_pypi: FakePyPI,
                      make_proxy: ProxyFactory) -> tuple[TestClient, str, bytes]:
    """A proxy whose memo answers a wheel's path, that path and the wheel's bytes."""
    dist = fake_pypi.add_wheel("demo", "1.0")
    client = await make_proxy(upstream=fake_pypi)
    path = f"/pypi/files/demo/{dist.filename}"
    await _warm(client, path)
    return client, path, dist.data


class TestPrepared:
    async def test_a_held_blob_and_a_page_are_written_from_their_kept_heads(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
            serialized: list[str]) -> None:
        client, path, _ = await _warm_wheel(fake_pypi, make_proxy)
        await _warm(client, "/pypi/simple/demo/")
        memo = client.server.app[SERVICES].warm
        for target in (path, "/pypi/simple/demo/"):
            hits = memo.hits
            del serialized[:]
            resp = await client.get(target, headers={"X-Request-Id": "req-1"})
            body = await resp.read()
            assert memo.hits == hits + 1
            assert serialized == []  # nothing serialized by aiohttp
            assert resp.status == 200
            assert int(resp.headers["Content-Length"]) == len(body)
            assert resp.headers.getall("X-Request-Id") == ["req-1"]
            assert resp.headers["X-Stockade-Cache"] == "hit"
            assert "Date" in resp.headers and "Server" in resp.headers
        assert body.startswith(b"<!DOCTYPE html>") or b"demo" in body

    async def test_head_http10_and_close_take_aiohttps_path(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
            serialized: list[str]) -> None:
        client, path, data = await _warm_wheel(fake_pypi, make_proxy)
        host = f"{client.server.host}:{client.server.port}"
        memo = client.server.app[SERVICES].warm
        for request, connection in (
                (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                 "close"),
                (f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n", None),
                (f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                 "close")):
            hits = memo.hits
            del serialized[:]
            answer = await _raw(client, request.encode("ascii"))
            head = _head(answer)
            assert memo.hits == hits + 1
            assert len(serialized) == 1  # aiohttp's own head
            assert head["status"].split(" ")[1] == "200"
            assert head.get("Connection") == connection
            assert head["Content-Length"] == str(len(data))
            assert answer.lower().count(b"\r\nx-request-id: ") == 1
            body = answer.split(b"\r\n\r\n", 1)[1]
            assert body == (b"" if request.startswith("HEAD") else data)


class TestPreparedResponse:
    """A ``PreparedResponse`` is a ``web.Response`` in all but how its head is written."""

    def test_holds_what_a_response_would(self) -> None:
        head = prepared_head((("Content-Type", "application/octet-stream"),
                              ("ETag", '"abc"')), 5)
        assert head is not None
        response = PreparedResponse(head, b"hello")
        plain = web.Response(body=b"hello", headers=head.headers)
        assert (response.status, response.reason, response.body) == \
            (plain.status, plain.reason, plain.body)
        assert response.headers == plain.headers
        assert response.content_type == "application/octet-stream"
        response.headers["X-Added"] = "1"  # each answer's headers its own
        assert "X-Added" not in head.headers
        assert "X-Added" not in PreparedResponse(head, b"hello").headers

    async def test_compressed_on_aiohttps_path(self, aiohttp_client: Any) -> None:
        body = b"stockade " * 1000
        head = prepared_head((("Content-Type", "text/plain"),), len(body))
        assert head is not None

        async def handler(request: web.Request) -> web.StreamResponse:
            response = PreparedResponse(head, body)
            response.enable_compression()
            return response

        app = web.Application()
        app.router.add_get("/", handler)
        client = await aiohttp_client(app)
        resp = await client.get("/", headers={"Accept-Encoding": "gzip"})
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] == "gzip"
        assert await resp.read() == body
