"""The connection's fast path (``server.fast_path``): a warm memo's hit answered below
aiohttp's request machinery gives the same answer, log line, metrics and record as
the slow path, decides access and policy per request, and leaves anything it is not
sure of to aiohttp untouched.

A real listening site on 127.0.0.1 (the fast path lives in the connection's protocol,
which a test client's server does not use), raw sockets, every wait bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from stockade.config.load import load_settings
from stockade.config.model import Settings, TlsSettings
from stockade.proxy.accesslog import JsonAccessLogger
from stockade.proxy.app import app_metrics, make_app, warm_memo_of
from stockade.proxy.auth import TOKENS
from stockade.proxy.fastpath import FastPath
from stockade.proxy.serving import ClientLimits, ConnectionGuard, GuardedSite
from stockade.proxy.state import SERVICES
from stockade.proxy.tls import server_context
from stockade.proxy.tokens import Role, create_token, revoke_token
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import Dist, FakePyPI

WAIT_S = 20.0
# What differs between two answers by design: when, and which request.
_PER_REQUEST = frozenset({"date", "x-request-id"})
_LOG_PER_REQUEST = frozenset({"request_id", "duration_s"})


class Response:
    def __init__(self, status_line: bytes, headers: list[tuple[str, str]], body: bytes):
        self.status_line, self.headers, self.body = status_line, headers, body

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def same(self) -> tuple[bytes, list[tuple[str, str]], bytes]:
        """What must be equal between two paths' answers."""
        return (self.status_line,
                [(k, v) for k, v in self.headers if k.lower() not in _PER_REQUEST],
                self.body)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head_only: bool = False) -> Response:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT_S)
        status_line, *lines = raw[:-4].split(b"\r\n")
        headers = [(k.decode(), v.strip().decode())
                   for k, _, v in (line.partition(b":") for line in lines)]
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = b"" if head_only else await asyncio.wait_for(
            self.reader.readexactly(length), WAIT_S)
        return Response(status_line, headers, body)

    async def get(self, path: str, extra: str = "", *, method: str = "GET") -> Response:
        await self.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
        return await self.response(head_only=method == "HEAD")

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), WAIT_S) == b""

    def close(self) -> None:
        self.writer.close()


class Captured(logging.Handler):
    """The access lines' fields."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(dict(getattr(record, "access", {})))


class Server:
    def __init__(self, app: web.Application, guard: ConnectionGuard, fast: FastPath,
                 port: int, log: Captured, tls: ssl.SSLContext | None = None) -> None:
        self.app, self.guard, self.fast, self.port, self.log = app, guard, fast, port, log
        self.tls = tls  # the client's context, where the server listens with TLS
        self.served: list[tuple[Any, ...]] = []

    async def connect(self, *, fast: bool = True) -> Connection:
        """A connection with the fast path, or without it (the slow path)."""
        self.guard.fast = self.fast if fast else None
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls)
        return Connection(reader, writer)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every metric sample but durations' sums and buckets' spread (timings)."""
        registry = app_metrics(self.app).registry
        app_metrics(self.app).tally.flush()
        out = {}
        for family in registry.collect():
            for sample in family.samples:
                name = sample.name
                timing = "seconds" in name and not name.endswith("_count")
                if name.endswith(("_sum", "_bucket", "_created")) or "process" in name or timing:
                    continue
                out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        return out


def _delta(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


Start = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start(tmp_path: Path, engine: FakeEngine, fake_pypi: FakePyPI
                ) -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []
    logger = logging.getLogger("stockade.access")
    captured = Captured()
    logger.addHandler(captured)
    level, logger.level = logger.level, logging.INFO

    async def starting(*, tls: bool = False, **extra: Any) -> Server:
        """A server; with ``tls``, listening with stockade's TLS context (a test CA's
        certificate for 127.0.0.1)."""
        settings: Settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
                     "cache": {"metadata_ttl_s": 300}},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "server": {"warm_memo_s": 60}, **extra})
        app = make_app(settings, environ={}, engine_factory=lambda _s: engine)
        runner = web.AppRunner(app, access_log_class=JsonAccessLogger, access_log=logger,
                               shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        guard = ConnectionGuard(ClientLimits(30, 30, None), app_metrics(app))
        fast = FastPath(app, memo_of=warm_memo_of, metrics=app_metrics(app))
        listening, client = None, None
        if tls:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1")
            leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.pem"))
            listening = server_context(TlsSettings(cert=tmp_path / "tls.pem",
                                                   key=tmp_path / "tls.pem"))
            client = ssl.create_default_context()
            ca.configure_trust(client)
        site = GuardedSite(runner, "127.0.0.1", 0, guard=guard, ssl_context=listening)
        await site.start()
        server = Server(app, guard, fast, site.port, captured, client)
        pipeline = app[SERVICES].pipeline
        noted = pipeline.on_served
        assert noted is not None

        def recording(client: str, who: Any, source: Any, info: Any) -> None:
            server.served.append((source.filename, client, who))
            noted(client, who, source, info)

        pipeline.on_served = recording
        return server

    yield starting
    for runner in runners:
        await runner.cleanup()
    logger.removeHandler(captured)
    logger.level = level


def _path(dist: Dist) -> str:
    return f"/pypi/files/demo/{dist.filename}"


async def _warm(server: Server, path: str) -> None:
    """Fetched, then found stored and remembered with its route (the slow path)."""
    conn = await server.connect(fast=False)
    for _ in range(2):
        assert (await conn.get(path)).status == 200
    conn.close()


async def _warmed(start: Start, fake_pypi: FakePyPI) -> tuple[Dist, Server]:
    """A server with one wheel, ``demo`` 1.0, warmed (``_warm``)."""
    dist = fake_pypi.add_wheel("demo", "1.0")
    server = await start()
    await _warm(server, _path(dist))
    return dist, server


async def _one(server: Server, path: str, extra: str = "", *, fast: bool,
               method: str = "GET") -> tuple[Response, dict[str, Any], dict[Any, float], int]:
    """One request on a fresh connection: its answer, access line, metrics' changes
    and whether the fast path answered it."""
    conn = await server.connect(fast=fast)
    lines, answered, before = len(server.log.lines), server.fast.answered, server.samples()
    response = await conn.get(path, extra, method=method)
    conn.close()
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while len(server.log.lines) == lines:  # logged once the answer is written
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    [line] = server.log.lines[lines:]
    return response, line, _delta(before, server.samples()), server.fast.answered - answered


async def _both(server: Server, path: str, extra: str = ""
                ) -> tuple[Response, dict[str, Any], dict[Any, float]]:
    """The same request the slow way, then the fast way, each on a fresh connection:
    the fast one's answer, access line and metrics' changes, once checked the same as
    the slow one's (but for what differs per request)."""
    slow, slow_line, slow_delta, slow_fast = await _one(server, path, extra, fast=False)
    quick, quick_line, quick_delta, quick_fast = await _one(server, path, extra, fast=True)
    assert (slow_fast, quick_fast) == (0, 1)
    assert quick.status == 200
    assert quick.same() == slow.same()
    assert ({k: v for k, v in quick_line.items() if k not in _LOG_PER_REQUEST}
            == {k: v for k, v in slow_line.items() if k not in _LOG_PER_REQUEST})
    assert quick_delta == slow_delta
    return quick, quick_line, quick_delta


class TestSameAnswer:
    @pytest.mark.parametrize("extra", ["", "User-Agent: pip/24.0\r\nAccept: */*\r\n",
                                       "X-Request-Id: abc-123\r\n",
                                       "Connection: keep-alive\r\nContent-Length: 0\r\n"])
    async def test_an_artifact_is_answered_as_the_slow_path_answers_it(
            self, start: Start, fake_pypi: FakePyPI, extra: str) -> None:
        dist, server = await _warmed(start, fake_pypi)
        quick, quick_line, quick_delta = await _both(server, _path(dist), extra)
        assert quick.body == dist.data
        assert quick.header("Date") and quick.header("X-Request-Id")
        if "X-Request-Id" in extra:
            assert quick.header("X-Request-Id") == "abc-123"
        assert quick_line["request_id"] == quick.header("X-Request-Id")
        counted = {name for name, _ in quick_delta}
        assert {"stockade_requests_total", "stockade_bytes_served_total"} <= counted
        assert server.served[-2:] == [(dist.filename, "127.0.0.1", None)] * 2

    async def test_over_tls_a_connection_s_later_requests_take_the_fast_path(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        """TLS hands the protocol the decrypted bytes and takes its write through the
        TLS transport. A connection's first request may come with the handshake's end,
        before aiohttp's request loop has started and while the session tickets wait
        to be sent: aiohttp answers it then. The later ones on the connection are
        answered by the fast path, the same answer as the slow path's."""
        dist = fake_pypi.add_wheel("demo", "1.0")
        server = await start(tls=True)
        for path in (_path(dist), "/pypi/simple/demo/"):
            await _warm(server, path)
            conn = await server.connect(fast=False)
            slow = await conn.get(path)
            conn.close()
            conn = await server.connect()
            assert conn.writer.transport.get_extra_info("ssl_object") is not None
            answered = server.fast.answered
            for _ in range(4):
                quick = await conn.get(path)
                assert quick.status == 200
                assert quick.same() == slow.same()
            # (however the first went, and the one after it, which may come before
            # aiohttp's loop waits again, the rest were the fast path's)
            assert server.fast.answered - answered >= 2
            if path == _path(dist):
                assert quick.body == dist.data
            conn.close()

    async def test_a_project_page_is_answered_as_the_slow_path_answers_it(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        server = await start()
        await _warm(server, "/pypi/simple/demo/")
        await _both(server, "/pypi/simple/demo/")

    @pytest.mark.parametrize(("path", "extra"), [
        ("/npm/demo", ""),
        ("/npm/demo", "Accept: application/vnd.npm.install-v1+json\r\n"),
        ("/npm/@acme%2fdemo", ""),
        ("/npm/demo/-/demo-1.0.0.tgz", ""),
        ("/npm/@acme/demo/-/demo-1.0.0.tgz", ""),
    ])
    async def test_npm_is_answered_as_the_slow_path_answers_it(
            self, start: Start, npm_registry: FakeNpm, path: str, extra: str) -> None:
        npm_registry.publish("demo", "1.0.0")
        npm_registry.publish("@acme/demo", "1.0.0")
        server = await start(npm={"upstreams": [{"name": "npmjs", "url": npm_registry.url}],
                                  "cache": {"metadata_ttl_s": 300}})
        conn = await server.connect(fast=False)
        for _ in range(3):  # fetched, rendered or stored, remembered
            assert (await conn.get(path, extra)).status == 200
        conn.close()
        await _both(server, path, extra)

    async def test_keep_alive_requests_are_answered_in_turn(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        dist, server = await _warmed(start, fake_pypi)
        conn = await server.connect()
        for _ in range(5):
            response = await conn.get(_path(dist))
            assert (response.status, response.body) == (200, dist.data)
        assert server.fast.answered == 5
        # aiohttp's answers between them, on the same connection, in turn
        head = await conn.get(_path(dist), method="HEAD")
        assert (head.status, head.header("Content-Length")) == (200, str(len(dist.data)))
        assert (await conn.get("/pypi/simple/demo/")).status == 200
        assert (await conn.get(_path(dist))).body == dist.data
        assert server.fast.answered == 6
        conn.close()


# Requests the fast path must leave to aiohttp, each with what aiohttp answers.
_FALLBACKS = [
    pytest.param("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n", id="head"),
    pytest.param("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n", id="http-1.0"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 id="connection-close"),
    pytest.param("GET {path}?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", id="query"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n", id="range"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"x\"\r\n\r\n",
                 id="if-none-match"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
                 id="body"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\n", id="chunked"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
                 id="expect"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n",
                 id="obs-fold"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nX-A: caf\xe9\r\n\r\n", id="non-ascii"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nX A: 1\r\n\r\n", id="odd-name"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", id="two-hosts"),
    pytest.param("GET {path} HTTP/1.1\r\nHost: a b\r\n\r\n", id="bad-host"),
    pytest.param("GET {path} HTTP/1.1\r\n\r\n", id="no-host"),
    pytest.param("GET {path} HTTP/1.1\nHost: t\n\n", id="bare-lf"),
]


class TestFallbacks:
    @pytest.mark.parametrize("template", _FALLBACKS)
    async def test_a_request_it_is_not_sure_of_is_aiohttps(
            self, start: Start, fake_pypi: FakePyPI, template: str) -> None:
        dist, server = await _warmed(start, fake_pypi)
        answers = []
        for fast in (False, True):
            conn = await server.connect(fast=fast)
            await conn.send(template.format(path=_path(dist)).encode("latin-1"))
            answers.append(await conn.response(head_only=template.startswith("HEAD")))
            conn.close()
        assert server.fast.answered == 0
        slow, quick = answers
        assert quick.same() == slow.same()

    async def test_pipelined_requests_are_answered_in_order(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        one, two = fake_pypi.add_wheel("demo", "1.0"), fake_pypi.add_wheel("demo", "2.0")
        server = await start()
        for dist in (one, two):
            await _warm(server, _path(dist))
        conn = await server.connect()
        await conn.send(b"".join(f"GET {_path(d)} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                                 for d in (one, two, one)))
        bodies = [(await conn.response()).body for _ in range(3)]
        assert bodies == [one.data, two.data, one.data]
        # then aiohttp's for the rest of the connection
        assert (await conn.get(_path(two))).body == two.data
        assert server.fast.answered == 0
        conn.close()

    async def test_a_request_sent_in_pieces_is_answered(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        dist, server = await _warmed(start, fake_pypi)
        conn = await server.connect()
        request = f"GET {_path(dist)} HTTP/1.1\r\nHost: t\r\nX-A: GET / HTTP/1.1\r\n\r\n"
        for piece in (request[:20], request[20:40], request[40:]):
            await conn.send(piece.encode())
            await asyncio.sleep(0.05)  # (separate reads, most likely)
        assert (await conn.response()).body == dist.data
        conn.close()

    async def test_a_cut_request_then_a_whole_one_is_not_mistaken(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        """A read that looks like a whole request after a partial one is its tail."""
        dist, server = await _warmed(start, fake_pypi)
        conn = await server.connect()
        await conn.send(b"GET /pypi/simple/other/ HTTP/1.1\r\nX-A: ")
        await asyncio.sleep(0.2)
        await conn.send(f"GET {_path(dist)} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        response = await conn.response()
        assert response.body != dist.data  # aiohttp's answer to the first request
        assert server.fast.answered == 0
        conn.close()

    async def test_connection_close_is_honoured(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        dist, server = await _warmed(start, fake_pypi)
        conn = await server.connect()
        response = await conn.get(_path(dist), "Connection: close\r\n")
        assert (response.status, response.body) == (200, dist.data)
        assert await conn.closed()
        conn.close()

    async def test_a_failure_before_the_write_leaves_the_request_to_aiohttp(
            self, start: Start, fake_pypi: FakePyPI, monkeypatch: pytest.MonkeyPatch
            ) -> None:
        """An aiohttp whose internals the fast path reads differently (here: reading
        the protocol's state raises) costs the fast path, not a request or a 500."""
        import stockade.proxy.fastpath as fastpath

        def changed(protocol: web.RequestHandler) -> bool:
            raise AttributeError("'RequestHandler' object has no attribute '_waiter'")

        dist, server = await _warmed(start, fake_pypi)
        monkeypatch.setattr(fastpath, "idle", changed)
        conn = await server.connect()
        for _ in range(2):
            response = await conn.get(_path(dist))
            assert (response.status, response.body) == (200, dist.data)
        conn.close()
        assert server.fast.broken
        assert server.fast.answered == 0

    async def test_off_by_config(self, tmp_path: Path, fake_pypi: FakePyPI) -> None:
        from stockade.proxy.cli import _runner

        base = {"storage": {"path": str(tmp_path / "data")},
                "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}]},
                "npm": {"upstreams": []}, "maven": {"upstreams": []}}
        _, on = _runner(load_settings(None, environ={}, overrides=base))
        _, off = _runner(load_settings(None, environ={}, overrides={
            **base, "server": {"fast_path": False}}))
        assert isinstance(on.fast, FastPath)
        assert off.fast is None


class TestDecidedPerRequest:
    async def test_a_version_refused_since_is_refused(
            self, start: Start, fake_pypi: FakePyPI, engine: FakeEngine) -> None:
        dist, server = await _warmed(start, fake_pypi)
        engine.blocked_versions.add(("demo", "1.0"))
        conn = await server.connect()
        response = await conn.get(_path(dist))
        assert response.status == 403
        assert response.status_line.startswith(b"HTTP/1.1 403 Blocked by stockade:")
        assert server.fast.answered == 0
        conn.close()

    async def test_a_purge_between_two_requests_is_seen(
            self, start: Start, fake_pypi: FakePyPI) -> None:
        dist, server = await _warmed(start, fake_pypi)
        conn = await server.connect()
        assert (await conn.get(_path(dist))).body == dist.data
        assert server.fast.answered == 1
        server.app[SERVICES].pipeline  # noqa: B018 - (the services are up)
        server.app[SERVICES].admission.metacache.forget_all()  # a purge's epoch
        assert (await conn.get(_path(dist))).body == dist.data
        assert server.fast.answered == 1  # the slow way
        conn.close()

    async def test_a_token_revoked_between_two_requests_is_refused(
            self, start: Start, fake_pypi: FakePyPI, tmp_path: Path) -> None:
        import base64

        dist = fake_pypi.add_wheel("demo", "1.0")
        tokens = tmp_path / "tokens.yaml"
        token, _ = create_token(tokens, "ci", team=None, roles=[Role.CLIENT])
        server = await start(auth={"tokens": str(tokens), "anonymous": {"pypi": False}})
        auth = "Authorization: Basic " + base64.b64encode(f"x:{token}".encode()).decode()
        conn = await server.connect(fast=False)
        for _ in range(2):
            assert (await conn.get(_path(dist), auth + "\r\n")).status == 200
        conn.close()
        conn = await server.connect()
        assert (await conn.get(_path(dist), auth + "\r\n")).body == dist.data
        assert (await conn.get(_path(dist))).status == 401  # no token: not anonymous
        assert server.fast.answered == 1
        revoke_token(tokens, "ci")
        server.app[TOKENS].load()  # as its watcher reloads it
        response = await conn.get(_path(dist), auth + "\r\n")
        assert response.status == 401
        assert server.fast.answered == 1
        conn.close()

    @pytest.mark.parametrize("how", ["rewritten", "replaced", "removed"])
    async def test_a_held_blob_changed_on_disk_between_two_requests_is_not_served(
            self, start: Start, fake_pypi: FakePyPI, how: str) -> None:
        """The held bytes' file is checked per request: rewritten in place with other
        bytes of its size, replaced by another file, or removed, the next request is
        not answered from memory (the slow path checks the file and fetches it
        again)."""
        dist, server = await _warmed(start, fake_pypi)
        conn = await server.connect()
        assert (await conn.get(_path(dist))).body == dist.data
        assert server.fast.answered == 1
        store = server.app[SERVICES].pipeline._store
        path = store.local_path(hashlib.sha256(dist.data).hexdigest())
        assert path is not None
        other = bytes(len(dist.data))  # the same size, other bytes
        if how == "rewritten":
            path.chmod(0o644)
            path.write_bytes(other)
        elif how == "replaced":
            spare = path.with_name("spare")
            spare.write_bytes(other)
            spare.replace(path)
        else:
            path.unlink()
        response = await conn.get(_path(dist))
        assert response.status == 200
        assert response.body == dist.data  # not the held copy unchecked, not ``other``
        assert server.fast.answered == 1  # the slow way
        conn.close()
