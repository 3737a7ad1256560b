"""Maven: a stored, verified artifact is served without asking anyone, and cold
requests ask the upstream once per file however many clients wait."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from stockade.policy.model import Facts, PackageRef, Verdict
from stockade.proxy.state import SERVICES
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.policy import FakeEngine
from tests.integration.outage_support import (
    JAR,
    POM,
    TINY_S,
    ProxyFor,
    asked,
    central,
    status,
)


class FactsEngine(FakeEngine):
    """A fake engine that also keeps the facts each version was decided on."""

    def __init__(self) -> None:
        super().__init__()
        self.facts: list[tuple[PackageRef, Facts]] = []

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        self.facts.append((ref, facts))
        return super().decide(ref, facts)


class TestMavenWarmPath:
    async def test_every_get_of_an_artifact_is_recorded_as_served(
            self, central_repo: FakeMaven, proxy_for: ProxyFor) -> None:
        """Cold, warm from its record and warm from the memo, each GET of the jar is an
        entry of the served-artifacts record (``stockade inventory``, who is affected),
        as a wheel's or a tarball's is; a HEAD or a checksum file is none."""
        client = await proxy_for(maven=central(central_repo))
        pipeline = client.app[SERVICES].pipeline
        noted = pipeline.on_served
        assert noted is not None
        served: list[str] = []

        def noting(client: str, who: Any, source: Any, info: Any) -> None:
            served.append(source.filename)
            noted(client, who, source, info)

        pipeline.on_served = noting
        for _ in range(4):
            assert await status(client, f"/maven/{JAR}") == 200
        assert (await client.head(f"/maven/{JAR}")).status == 200
        assert await status(client, f"/maven/{JAR}.sha1") == 200
        assert served == [Path(JAR).name] * 4

    async def test_cached_artifact_asks_nobody(self, central_repo: FakeMaven,
                                               proxy_for: ProxyFor) -> None:
        # Every remembered 404 (of .sha512 and .sha256) has expired: a warm request
        # that looked for checksums first would ask for them again.
        client = await proxy_for(maven=central(central_repo), cache={"negative_ttl_s": TINY_S})
        assert await status(client, f"/maven/{JAR}") == 200
        before = len(central_repo.requests)
        for suffix in ("", ".sha1", ".md5", ".sha256"):
            resp = await client.get(f"/maven/{JAR}{suffix}")
            assert resp.status == 200, suffix
        assert (await client.head(f"/maven/{JAR}")).status == 200
        assert len(central_repo.requests) == before

    async def test_cached_artifact_served_while_the_upstream_is_down(
            self, central_repo: FakeMaven, proxy_for: ProxyFor) -> None:
        client = await proxy_for(maven=central(central_repo))
        assert await status(client, f"/maven/{JAR}") == 200
        assert await status(client, f"/maven/{POM}") == 200
        await central_repo.stop()
        resp = await client.get(f"/maven/{JAR}")
        assert resp.status == 200
        assert await resp.read() == central_repo.files[JAR]
        assert await (await client.get(f"/maven/{JAR}.sha1")).text() == hashlib.sha1(  # noqa: S324
            central_repo.files[JAR]).hexdigest()
        assert (await client.get(f"/maven/{POM}")).status == 200

    @pytest.mark.parametrize("headers", [(), ("sha1", "md5")])
    @pytest.mark.parametrize("published", [("md5", "sha1"), ("sha1", "sha256", "sha512"), ()])
    async def test_concurrent_cold_requests_ask_once_per_file(
            self, central_repo: FakeMaven, proxy_for: ProxyFor, published: tuple[str, ...],
            headers: tuple[str, ...]) -> None:
        central_repo.published = published
        central_repo.checksum_headers = headers
        client = await proxy_for(maven=central(central_repo))

        async def get() -> bytes:
            resp = await client.get(f"/maven/{JAR}")
            assert resp.status == 200
            return await resp.read()

        bodies = await asyncio.gather(*(get() for _ in range(50)))
        assert all(b == central_repo.files[JAR] for b in bodies)
        counts = asked(central_repo, JAR)
        # The jar once (its response stands for an existence probe), and without a
        # digest in its headers each checksum file up to the strongest published, once.
        wanted = next((alg for alg in ("sha512", "sha256", "sha1") if alg in published), None)
        order = ("sha512", "sha256", "sha1")
        tried = order[: order.index(wanted) + 1] if wanted else order
        assert counts == {**{f".{alg}": 1 for alg in tried if not headers}, "file": 1}

    async def test_served_from_its_record_alone_with_the_recorded_publish_date(
            self, central_repo: FakeMaven, proxy_for: ProxyFor, tmp_path: Path) -> None:
        central_repo.last_modified[JAR] = "Tue, 02 Jan 2024 03:04:05 GMT"
        upstreams = central(central_repo)
        assert await status(await proxy_for(maven=upstreams), f"/maven/{JAR}") == 200
        await central_repo.stop()
        # A new process, and the metadata cache (checksum files, remembered 404s) gone:
        # only the artifact's own record and blob are left.
        shutil.rmtree(tmp_path / "data" / "refs" / "metadata", ignore_errors=True)
        engine = FactsEngine()
        client = await proxy_for(maven=upstreams, use=engine)
        resp = await client.get(f"/maven/{JAR}")
        assert resp.status == 200
        assert await resp.read() == central_repo.files[JAR]
        decided = [f for ref, f in engine.facts if ref.version == "1.0"]
        assert decided
        published = decided[-1].published_at
        assert published is not None
        assert published.isoformat() == "2024-01-02T03:04:05+00:00"

    async def test_unverified_artifact_takes_the_cold_path_when_now_strict(
            self, central_repo: FakeMaven, proxy_for: ProxyFor) -> None:
        central_repo.published = ()
        central_repo.checksum_headers = ()
        lax = await proxy_for(maven=central(central_repo))
        assert await status(lax, f"/maven/{JAR}") == 200
        strict = await proxy_for(maven=central(central_repo),
                                 maven_opts={"missing_checksum": "block"})
        assert (await strict.get(f"/maven/{JAR}")).status == 502

    async def test_warm_hit_still_decided(self, central_repo: FakeMaven, proxy_for: ProxyFor,
                                          engine: FakeEngine) -> None:
        client = await proxy_for(maven=central(central_repo))
        assert await status(client, f"/maven/{JAR}") == 200
        engine.blocked_versions.add(("org.example:demo", "1.0"))
        resp = await client.get(f"/maven/{JAR}")
        assert resp.status == 403
        assert resp.reason.startswith("Blocked by stockade:")
