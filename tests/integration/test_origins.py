"""Upstream metadata may only send stockade to the scheme, host and port of its
upstream or of a configured file host."""

from __future__ import annotations

import pytest

from testbed.fakes.pypi_upstream import FakePyPI
from tests.integration.outage_support import ProxyFor


class TestAllowedOrigins:
    @pytest.mark.parametrize("scheme_change", [False, True])
    async def test_own_host_on_another_port_or_scheme_is_not_fetched(
            self, fake_pypi: FakePyPI, proxy_for: ProxyFor, scheme_change: bool) -> None:
        elsewhere = FakePyPI()
        good = fake_pypi.add_wheel("demo", "1.0")
        bad = fake_pypi.add_wheel("demo", "2.0")
        elsewhere.projects = fake_pypi.projects
        await elsewhere.start()
        try:
            assert elsewhere.server is not None and fake_pypi.server is not None
            port = fake_pypi.server.port if scheme_change else elsewhere.server.port
            scheme = "https" if scheme_change else "http"
            fake_pypi.foreign_links[bad.filename] = f"{scheme}://127.0.0.1:{port}{bad.path}"
            client = await proxy_for(pypi=[{"name": "pypi", "url": fake_pypi.url, "retries": 0}])
            assert (await client.get(f"/pypi/files/demo/{good.filename}")).status == 200
            assert (await client.get(f"/pypi/files/demo/{bad.filename}")).status == 404
            assert elsewhere.requests == []
            assert not any(p.endswith(bad.filename) for _, p in fake_pypi.requests)
        finally:
            await elsewhere.stop()

    async def test_file_host_given_as_origin_is_fetched(self, fake_pypi: FakePyPI,
                                                        proxy_for: ProxyFor) -> None:
        elsewhere = FakePyPI()
        dist = fake_pypi.add_wheel("demo", "1.0")
        elsewhere.projects = fake_pypi.projects
        await elsewhere.start()
        try:
            assert elsewhere.server is not None
            origin = f"http://127.0.0.1:{elsewhere.server.port}"
            fake_pypi.foreign_links[dist.filename] = origin + dist.path
            client = await proxy_for(pypi=[{"name": "pypi", "url": fake_pypi.url, "retries": 0,
                                     "file_hosts": [origin]}])
            resp = await client.get(f"/pypi/files/demo/{dist.filename}")
            assert resp.status == 200
            assert await resp.read() == dist.data
            assert [p for _, p in elsewhere.requests] == [dist.path]
        finally:
            await elsewhere.stop()
