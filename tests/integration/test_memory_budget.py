"""``server.memory_budget_bytes``: what a worker's caches drop past it is read again
from storage, never fetched again from the upstream while it is fresh, and served
as it was."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from stockade.proxy.app import REEVALUATOR
from stockade.proxy.state import SERVICES
from testbed.fakes.pypi_upstream import Dist, FakePyPI
from tests.conftest import ProxyFactory

NAMES = ("alpha", "beta", "gamma", "delta")


async def _serve(client: TestClient, name: str, dist: Dist) -> tuple[bytes, bytes]:
    page = await client.get(f"/pypi/simple/{name}/")
    assert page.status == 200
    wheel = await client.get(f"/pypi/files/{name}/{dist.filename}")
    assert wheel.status == 200
    return await page.read(), await wheel.read()


def _held_pages(client: TestClient) -> list[str]:
    """The URLs of the metadata documents the metadata cache holds in memory."""
    metacache = client.server.app[SERVICES].admission.metacache
    return [doc.url for doc in metacache._memory.values()]


async def test_what_the_budget_dropped_is_read_again_from_storage(
        fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
    dists = {name: fake_pypi.add_wheel(name, "1.0", payload_bytes=4096) for name in NAMES}
    client = await make_proxy(upstream=fake_pypi, server={"memory_budget_bytes": 4096})
    first = {name: await _serve(client, name, dist) for name, dist in dists.items()}
    asked = list(fake_pypi.requests)
    assert not any("/alpha/" in url for url in _held_pages(client))  # dropped
    assert any("/delta/" in url for url in _held_pages(client))
    for name, dist in dists.items():
        assert await _serve(client, name, dist) == first[name]
        assert first[name][1] == dist.data
    assert fake_pypi.requests == asked  # still fresh: no upstream asked again


async def test_re_deciding_after_a_policy_swap_shares_the_budget(
        fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
    # the lead worker's re-decisions read and parse documents of their own: held
    # under the same budget as what serving holds, not beside it
    client = await make_proxy(upstream=fake_pypi, server={"memory_budget_bytes": 4096})
    serving = client.server.app[SERVICES].admission
    offline = client.server.app[REEVALUATOR]._admission
    assert offline.metacache._memory.account._budget is serving.metacache._memory.account._budget
    assert offline._parsed.account._budget is serving.metacache._memory.account._budget


async def test_the_files_trusted_without_a_hash_are_weighed_in_the_budget(
        fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
    # every small blob served is remembered as hashed right, not only those the
    # memory drops: a wide load must not grow that beside the budget
    dists = {name: fake_pypi.add_wheel(name, "1.0") for name in NAMES}
    client = await make_proxy(upstream=fake_pypi, server={"memory_budget_bytes": 64 * 1024})
    for name, dist in dists.items():
        assert (await _serve(client, name, dist))[1] == dist.data
    budget = client.server.app[SERVICES].admission.metacache._memory.account._budget
    usage = budget.usage()
    assert usage["trusted files"] > 0
    assert sum(usage.values()) <= budget.max_bytes
