"""A Host header the proxy cannot build URLs from is a 400 with a sentence, never a 500.

Requests are written on a raw socket so the header reaches the server exactly as
given (client libraries refuse or rewrite odd Host values).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI


@dataclass
class Proxy:
    server: TestServer

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of one request written byte for byte."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"GET {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n"
                         .encode("utf-8", "surrogatepass"))
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout=30)
        finally:
            writer.close()
        head_bytes, _, body = raw.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return status, {k.lower(): v for k, v in fields.items()}, body


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    pypi = FakePyPI()
    await pypi.start()
    pypi.add_wheel("demo", "1.0")
    npm = await FakeNpm().start()
    npm.publish("left-pad", "1.0.0", time="2024-01-01T00:00:00.000Z")
    maven = await FakeMaven().start()
    maven.add("com.example", "demo", "1.0")
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": pypi.url, "retries": 0}]},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm.url, "retries": 0}]},
        "maven": {"upstreams": [{"name": "central", "url": maven.url, "retries": 0}],
                  "missing_checksum": "warn"},
    })
    app = make_app(settings, environ={}, engine_factory=lambda _s: FakeEngine())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Proxy(server)
    finally:
        await server.close()
        await maven.stop()
        await npm.stop()
        await pypi.stop()


ROUTES = {
    "pypi page": "/pypi/simple/demo/",
    "pypi json": "/pypi/pypi/demo/json",
    "npm packument": "/npm/left-pad",
    "maven jar": "/maven/com/example/demo/1.0/demo-1.0.jar",
    "admin explain": "/_stockade/explain/npm/left-pad",
}
# Each of these answered 500 with a traceback on at least one route (the IPv6 one
# even after the first check here, found by tests/fuzz).
BAD_HOSTS = ["a:b", "example.com:99999", "", "[::1", "a b", "a:1:2", "[zz]:80", "[33:8:]",
             "exa\u00e9mple.com"]


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize("route", list(ROUTES))
async def test_bad_host_is_a_400_in_the_routes_error_form(
    proxy: Proxy, route: str, host: str
) -> None:
    status, headers, body = await proxy.get(ROUTES[route], {"Host": host})
    assert status == 400, body
    if route.startswith(("npm", "admin")):
        sentence = json.loads(body)["error"]
    else:
        sentence = body.decode().strip()
    assert "Host header" in sentence
    assert headers.get("x-request-id")


@pytest.mark.parametrize("host", ["a\x01b", "a\x7fb", "a\x00b"])
async def test_control_characters_in_host_are_refused(proxy: Proxy, host: str) -> None:
    for path in ROUTES.values():
        status, _, _ = await proxy.get(path, {"Host": host})
        assert status == 400, (path, host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8080", "[::1]:8080",
                                  "stockade.internal.example", "my_proxy:80", "A.Example"])
async def test_good_hosts_are_served(proxy: Proxy, host: str) -> None:
    expected: dict[str, Any] = {"pypi page": 200, "pypi json": 200, "npm packument": 200,
                                "maven jar": 200, "admin explain": 200}
    for route, path in ROUTES.items():
        status, _, body = await proxy.get(path, {"Host": host})
        assert status == expected[route], (route, host, body[:200])


async def test_absolute_urls_use_a_good_host(proxy: Proxy) -> None:
    status, _, body = await proxy.get("/npm/left-pad", {"Host": "proxy.example:8081"})
    assert status == 200
    tarball = json.loads(body)["versions"]["1.0.0"]["dist"]["tarball"]
    assert tarball.startswith("http://proxy.example:8081/npm/left-pad/-/")
