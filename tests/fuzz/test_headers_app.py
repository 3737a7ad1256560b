"""Host and Accept values fuzzed through the whole application: never a 500.

The proxy and its fake upstreams run on a loop in a thread, and each case is one
request written on a raw socket, so header bytes reach the server as drawn.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fuzz import strategies as s

PATHS = [
    "/pypi/simple/", "/pypi/simple/demo/", "/pypi/pypi/demo/json", "/npm/left-pad",
    "/npm/left-pad/1.0.0", "/maven/com/example/demo/1.0/demo-1.0.jar",
    "/maven/com/example/demo/maven-metadata.xml", "/_stockade/explain/npm/left-pad", "/healthz",
]
# Header values as bytes: anything but CR and LF, which would end the header line.
header_text = st.text(alphabet=st.characters(exclude_characters="\r\n"), max_size=40)


class Served:
    """The proxy in front of fake PyPI, npm and Maven upstreams, on a thread's loop."""

    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pypi, self.npm, self.maven = FakePyPI(), FakeNpm(), FakeMaven()
        for fake in (self.pypi, self.npm, self.maven):
            self.call(fake.start())
        self.pypi.add_wheel("demo", "1.0")
        self.npm.publish("left-pad", "1.0.0", time="2024-01-01T00:00:00.000Z")
        self.maven.add("com.example", "demo", "1.0")
        config = load_settings(None, environ={}, overrides={
            "storage": {"path": str(root / "data")},
            "pypi": {"upstreams": [{"name": "pypi", "url": self.pypi.url, "retries": 0}]},
            "npm": {"upstreams": [{"name": "npmjs", "url": self.npm.url, "retries": 0}]},
            "maven": {"upstreams": [{"name": "central", "url": self.maven.url, "retries": 0}]},
        })
        app = make_app(config, environ={}, engine_factory=lambda _s: FakeEngine())
        self.runner = web.AppRunner(app, access_log=None)
        self.call(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.call(site.start())
        self.port = self.runner.addresses[0][1]

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def status(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"GET {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(request.encode("utf-8", "surrogatepass"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        raw = b"".join(chunks)
        return int(raw.split(b" ", 2)[1]), raw

    def close(self) -> None:
        self.call(self.runner.cleanup())
        for fake in (self.maven, self.npm, self.pypi):
            self.call(fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("headers"))
    yield server
    server.close()


FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(path=st.sampled_from(PATHS), host=st.one_of(s.hosts, header_text))
def test_host_values_never_answer_500(served: Served, path: str, host: str) -> None:
    status, raw = served.status(path, {"Host": host})
    assert status < 500, raw[:500]


@FUZZ
@given(path=st.sampled_from(PATHS), accept=st.one_of(s.accept_values, header_text))
def test_accept_values_never_answer_500(served: Served, path: str, accept: str) -> None:
    status, raw = served.status(path, {"Host": "127.0.0.1", "Accept": accept})
    assert status < 500, raw[:500]
    if all(c == "\t" or " " <= c != "\x7f" for c in accept):
        # aiohttp's parser refuses control characters with 400; anything else is
        # answered, in a default form at worst.
        assert status != 400, raw[:500]
