"""The warm-hit memo: a repeated artifact request skips what it may, never a decision.

Each test warms a file until the memo answers it (``WarmMemo.hits`` moves), then
changes what the answer depends on (the policy, the upstream's page, a purge, the
clock) and checks that the next request gets what a server without the memo
gives.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.policy.model import ALLOWED, Decision, Ecosystem, Facts, PackageRef, Verdict
from stockade.proxy import warmmemo
from stockade.proxy.app import load_engine, make_app
from stockade.proxy.state import SERVICES
from stockade.proxy.tokens import Role, create_token
from stockade.proxy.warmmemo import WarmMemo
from stockade.proxy.warmrecord import Note
from stockade.storage.protocol import BlobInfo
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import Dist, FakePyPI
from tests.conftest import ProxyFactory


def _memo(client: TestClient) -> WarmMemo:
    memo = client.server.app[SERVICES].warm
    assert memo is not None
    return memo


def _path(dist: Dist, name: str = "demo") -> str:
    return f"/pypi/files/{name}/{dist.filename}"


async def _warm(client: TestClient, path: str, data: bytes) -> None:
    """Serve ``path`` until the memo has answered it once."""
    memo = _memo(client)
    hits = memo.hits
    for _ in range(3):
        resp = await client.get(path)
        assert resp.status == 200
        assert await resp.read() == data
    assert memo.hits == hits + 1  # cold (fetched), warm (remembered), memo


class TestPolicy:
    async def test_a_reloaded_policy_that_refuses_the_package_refuses_the_next_request(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        await _warm(client, _path(dist), dist.data)
        client.server.app[SERVICES].gate.swap(
            FakeEngine(blocked_names={"demo"}, revision="fake-2"))
        resp = await client.get(_path(dist))
        assert resp.status == 403
        assert resp.reason is not None and "(rule deny-list)" in resp.reason

    async def test_each_memo_hit_is_decided_by_the_engine_in_force(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine) -> None:
        # the same revision, another answer: nothing but the decision itself can catch it
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        await _warm(client, _path(dist), dist.data)
        engine.blocked_versions.add(("demo", "1.0"))
        resp = await client.get(_path(dist))
        assert resp.status == 403
        assert resp.reason is not None and "(rule age)" in resp.reason
        assert len(_memo(client)) == 0  # a refusal is not remembered


class TestMetadata:
    async def test_a_refreshed_page_with_another_digest_is_refused(
            self, aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
        dist = fake_pypi.add_wheel("stockade-memotest", "1.0")
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}],
                     "cache": {"metadata_ttl_s": 60}},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "server": {"warm_memo_s": 30},
        })
        client: TestClient = await aiohttp_client(
            make_app(settings, environ={}, engine_factory=load_engine))
        path = _path(dist, "stockade-memotest")
        await _warm(client, path, dist.data)
        now = [_memo(client).now()]
        client.server.app[SERVICES].admission.metacache._clock = lambda: now[0]
        dist.data = dist.data + b"\0swapped"  # the page's digest changes with the bytes
        resp = await client.get(path)
        assert resp.status == 200  # the page is still fresh: as without the memo
        now[0] += 61  # the page is revalidated: the new digest is seen
        resp = await client.get(path)
        assert resp.status == 403
        assert resp.reason is not None and "(rule republished)" in resp.reason

    async def test_a_file_gone_from_the_refreshed_page_is_not_served(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        fake_pypi.add_wheel("demo", "2.0")
        client = await make_proxy(upstream=fake_pypi)
        await _warm(client, _path(dist), dist.data)
        fake_pypi.projects["demo"].remove(dist)
        metacache = client.server.app[SERVICES].admission.metacache
        now = [_memo(client).now() + 301]  # past the page's TTL (300 s)
        metacache._clock = lambda: now[0]
        resp = await client.get(_path(dist))
        assert resp.status == 404


def _purging_settings(tmp_path: Path, upstream: FakePyPI) -> tuple[Any, str]:
    """Settings with an admin token (purges need one), and the token."""
    tokens = tmp_path / "tokens.yaml"
    admin, _ = create_token(tokens, "ops", team=None, roles=[Role.ADMIN])
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": upstream.url}]},
        "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "auth": {"tokens": str(tokens)},
        "server": {"warm_memo_s": 30},
    })
    return settings, admin


class TestStoredBytes:
    async def test_a_blob_changed_on_disk_is_never_answered_from_the_memo(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        await _warm(client, _path(dist), dist.data)
        store = client.server.app[SERVICES].pipeline._store
        path = store.local_path(hashlib.sha256(dist.data).hexdigest())
        assert path is not None
        path.chmod(0o644)
        tampered = bytes(len(dist.data))  # the same size, other bytes
        path.write_bytes(tampered)
        memo = _memo(client)
        hits = memo.hits
        resp = await client.get(_path(dist))
        assert resp.status == 200
        assert await resp.read() == dist.data  # not the held copy unchecked, not these
        assert memo.hits == hits  # the held bytes' file changed: served the slow way


class TestPurge:
    @pytest.mark.parametrize("by_another", [False, True],
                             ids=["this process", "another process"])
    async def test_a_purged_file_is_fetched_again(
            self, fake_pypi: FakePyPI, aiohttp_client: Any, tmp_path: Path,
            engine: FakeEngine, by_another: bool) -> None:
        """A purge in this process, or in another over the same storage folder (as two
        worker processes are), ends this process's memo entry."""
        dist = fake_pypi.add_wheel("demo", "1.0")
        settings, admin = _purging_settings(tmp_path, fake_pypi)
        first: TestClient = await aiohttp_client(
            make_app(settings, environ={}, engine_factory=lambda _s: engine))
        purger = first if not by_another else await aiohttp_client(
            make_app(settings, environ={}, engine_factory=lambda _s: engine, lead=False))
        await _warm(first, _path(dist), dist.data)
        assert fake_pypi.count(dist.filename) == 1
        resp = await purger.delete("/_stockade/admin/cache/pypi/demo",
                                   headers={"Authorization": f"Bearer {admin}"})
        assert resp.status == 200
        hits = _memo(first).hits
        resp = await first.get(_path(dist))
        assert (resp.status, await resp.read()) == (200, dist.data)
        assert resp.headers["X-Stockade-Cache"] == "miss"
        assert _memo(first).hits == hits
        assert fake_pypi.count(dist.filename) == 2


def _counters(text: str) -> dict[str, float]:
    """The request, decision, byte and metadata counters of a /metrics page."""
    wanted = ("stockade_requests_total", "stockade_policy_decisions_total",
              "stockade_bytes_served_total", "stockade_cache_requests_total",
              "stockade_blob_verifications_total")
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if match and match.group(1) in wanted:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


class TestAccounting:
    async def _counted(self, client: TestClient, dist: Dist) -> tuple[dict[str, float], int]:
        """What 5 warm requests add to the counters and the served record."""
        for _ in range(3):  # fetched, then warm
            resp = await client.get(_path(dist))
            assert (resp.status, await resp.read()) == (200, dist.data)
        served: list[BlobInfo] = []
        pipeline = client.server.app[SERVICES].pipeline
        on_served = pipeline.on_served
        assert on_served is not None

        def noting(client: str, who: Any, source: Any, info: BlobInfo) -> None:
            served.append(info)
            on_served(client, who, source, info)

        pipeline.on_served = noting
        before = _counters(await (await client.get("/metrics")).text())
        for _ in range(5):
            resp = await client.get(_path(dist))
            assert (resp.status, await resp.read()) == (200, dist.data)
        after = _counters(await (await client.get("/metrics")).text())
        delta = {k: v - before.get(k, 0.0) for k, v in after.items()
                 if v != before.get(k, 0.0) and "metrics" not in k}
        return delta, len(served)

    async def test_a_memo_hit_counts_and_records_as_a_warm_hit_without_it(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        with_memo = await make_proxy(upstream=fake_pypi)
        on, served_on = await self._counted(with_memo, dist)
        assert _memo(with_memo).hits >= 1
        without = await make_proxy(load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "other")},
            "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}],
                     "cache": {"metadata_ttl_s": 300}},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "server": {"warm_memo_s": 0}}))
        assert without.server.app[SERVICES].warm is None
        off, served_off = await self._counted(without, dist)
        assert on == off
        assert any(k.startswith("stockade_policy_decisions_total") for k in on)
        assert any(k.startswith("stockade_cache_requests_total") for k in on)
        assert served_on == served_off == 5


@dataclass
class ApprovedUntil:
    """Allows ``demo`` while the clock reads before ``until``, refuses it after (as an
    approval with an end does)."""

    until: float
    clock: list[float]
    revision: str = "until-1"
    calls: list[PackageRef] = field(default_factory=list)

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        self.calls.append(ref)
        if ref.version is not None and self.clock[0] >= self.until:
            return Verdict(Decision.BLOCK, "hold", f"{ref.display()}: the approval ended")
        return ALLOWED

    def explain(self, ref: PackageRef, facts: Facts) -> list[Verdict]:
        return [self.decide(ref, facts)]

    def filter_versions(self, name: PackageRef,
                        versions: Mapping[str, Facts]) -> dict[str, Verdict]:
        return {v: self.decide(PackageRef(name.ecosystem, name.name, v), f)
                for v, f in versions.items()}


class TestTime:
    async def test_an_entry_ends_after_its_validity(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        await _warm(client, _path(dist), dist.data)
        memo = _memo(client)
        now = [memo.now()]
        client.server.app[SERVICES].admission.metacache._clock = lambda: now[0]
        now[0] += memo.validity_s + 0.01
        hits = memo.hits
        resp = await client.get(_path(dist))
        assert (resp.status, await resp.read()) == (200, dist.data)
        assert memo.hits == hits  # served the slow way, and remembered again
        resp = await client.get(_path(dist))
        assert memo.hits == hits + 1

    async def test_a_rule_on_the_clock_refuses_a_remembered_file_when_it_ends(
            self, fake_pypi: FakePyPI, aiohttp_client: Any, tmp_path: Path) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        clock = [0.0]
        engine = ApprovedUntil(until=10.0, clock=clock)
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}]},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "server": {"warm_memo_s": 60},
        })
        client: TestClient = await aiohttp_client(
            make_app(settings, environ={}, engine_factory=lambda _s: engine))
        await _warm(client, _path(dist), dist.data)
        clock[0] = 10.0  # within the entry's validity, past the approval
        resp = await client.get(_path(dist))
        assert resp.status == 403
        assert resp.reason is not None and "(rule hold)" in resp.reason


class TestProjectPage:
    async def test_a_remembered_page_is_the_page_as_rendered(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        memo = _memo(client)
        answers = []
        for accept in ("application/vnd.pypi.simple.v1+json", "text/html"):
            for _ in range(4):  # remembered once the page is fresh, then from the memo
                resp = await client.get("/pypi/simple/demo/", headers={"Accept": accept})
                assert resp.status == 200
                answers.append((await resp.read(), resp.headers["Content-Type"],
                                resp.headers["X-Stockade-Policy-Revision"]))
        # JSON: fetched, remembered, 2 from the memo; HTML: remembered, 3 from it
        assert memo.hits == 2 + 3  # each form is its own entry
        assert len(set(answers[:4])) == 1
        assert len(set(answers[4:])) == 1
        assert answers[0][1].startswith("application/vnd.pypi.simple.v1+json")
        assert answers[4][1].startswith("text/html")

    async def test_a_page_refused_by_name_is_served_as_without_the_memo(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        for _ in range(3):
            assert (await client.get("/pypi/simple/demo/")).status == 200
        assert _memo(client).hits == 1
        engine.blocked_names.add("demo")  # the same revision: only deciding again sees it
        resp = await client.get("/pypi/simple/demo/")
        assert resp.status == 200  # the files stay listed; their download says why
        assert resp.headers["X-Stockade-Refused"] == "deny-list"
        assert _memo(client).hits == 1



class _Clock:
    """The two things of a metadata cache the memo reads when it remembers."""

    epoch = 0

    def clock(self) -> float:
        return 0.0


def _page_note() -> Note:
    taken = Note()
    taken.decided(PackageRef(Ecosystem.PYPI, "demo", None), Facts(upstream="pypi"))
    taken.read("pypi", "demo", "v1", 60.0)
    return taken


def test_the_memo_is_bounded_by_bytes_and_leaves_out_large_pages() -> None:
    """Pages are keyed by the client's address too: a count of entries alone would let
    many large pages grow a worker without bound."""
    memo = WarmMemo(Any, _Clock(), Any,  # type: ignore[arg-type]
                    validity_s=30, max_bytes=10 * warmmemo.ENTRY_BYTES + 50_000)
    page = web.Response(body=b"x" * 10_000, headers={"X-Stockade-Cache": "hit"})
    for client in range(50):
        memo.remember_page((str(client),), _page_note(), 0, 0.0, page)
    assert 0 < len(memo) < 10  # the oldest dropped by size, not by count
    large = web.Response(body=b"x" * (warmmemo.PAGE_MAX_BYTES + 1),
                         headers={"X-Stockade-Cache": "hit"})
    memo.clear()
    memo.remember_page(("large",), _page_note(), 0, 0.0, large)
    assert len(memo) == 0


class TestAnswer:
    @pytest.mark.parametrize("headers", [
        {}, {"Range": "bytes=2-9"}, {"If-None-Match": "*"}, {"Range": "bytes=-4"}])
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    async def test_a_memo_answer_is_the_answer_without_it(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path,
            method: str, headers: dict[str, str]) -> None:
        """Status, headers and bytes, whole, ranged, conditional or HEAD: the memo's
        headers made once per entry are those a server without it sends."""
        dist = fake_pypi.add_wheel("demo", "1.0")
        with_memo = await make_proxy(upstream=fake_pypi)
        without = await make_proxy(load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "other")},
            "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url}]},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "server": {"warm_memo_s": 0}}))
        await _warm(with_memo, _path(dist), dist.data)
        answers = []
        for client in (with_memo, without):
            for _ in range(2):  # (the second from the memo, or warm without it)
                resp = await client.request(method, _path(dist), headers=headers)
                body = await resp.read()
            answers.append((resp.status, body, {
                k: v for k, v in resp.headers.items()
                if k.lower() not in ("date", "x-request-id", "server")}))
        hits = _memo(with_memo).hits
        assert hits >= 3
        assert answers[0] == answers[1]
