"""Upstream 404s are remembered for a while, and answered while the upstream is down."""

from __future__ import annotations

from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.npm_upstream import FakeNpm
from tests.integration.outage_support import MODULE, TINY_S, ProxyFor, asked, central


class TestNegativeAnswers:
    async def test_missing_maven_files_are_asked_once(self, central_repo: FakeMaven,
                                                      proxy_for: ProxyFor) -> None:
        client = await proxy_for(maven=central(central_repo))
        for _ in range(3):
            assert (await client.get(f"/maven/{MODULE}")).status == 404
        # the file itself, once: its 404 is remembered
        assert asked(central_repo, MODULE) == {"file": 1}

    async def test_remembered_404_answers_while_the_upstream_is_down(
            self, central_repo: FakeMaven, proxy_for: ProxyFor) -> None:
        client = await proxy_for(maven=central(central_repo), cache={"negative_ttl_s": TINY_S})
        assert (await client.get(f"/maven/{MODULE}")).status == 404
        await central_repo.stop()
        resp = await client.get(f"/maven/{MODULE}")
        assert resp.status == 404, await resp.text()

    async def test_missing_npm_package_is_asked_once(self, npm_registry: FakeNpm,
                                                     proxy_for: ProxyFor) -> None:
        client = await proxy_for(npm=[{"name": "npmjs", "url": npm_registry.url, "retries": 0}])
        for _ in range(3):
            assert (await client.get("/npm/no-such-optional-dep")).status == 404
        assert sum(1 for _, p in npm_registry.requests if p.endswith("/no-such-optional-dep")) == 1

    async def test_npm_404_answers_while_the_upstream_is_down(self, npm_registry: FakeNpm,
                                                              proxy_for: ProxyFor) -> None:
        client = await proxy_for(npm=[{"name": "npmjs", "url": npm_registry.url, "retries": 0}],
                                 cache={"negative_ttl_s": TINY_S})
        assert (await client.get("/npm/no-such-optional-dep")).status == 404
        await npm_registry.stop()
        assert (await client.get("/npm/no-such-optional-dep")).status == 404

    async def test_negative_ttl_passes_then_asks_again(self, npm_registry: FakeNpm,
                                                       proxy_for: ProxyFor) -> None:
        client = await proxy_for(npm=[{"name": "npmjs", "url": npm_registry.url, "retries": 0}],
                                 cache={"negative_ttl_s": TINY_S})
        assert (await client.get("/npm/later")).status == 404
        npm_registry.publish("later", "1.0.0")
        assert (await client.get("/npm/later")).status == 200
