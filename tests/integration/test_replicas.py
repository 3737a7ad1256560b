"""Two replicas on one bucket: what one stored, the other serves; they agree.

Two stockade apps with their own storage paths (hot cache, spool, metadata)
and replica names share one bucket on a real S3 server process (moto), in
front of one fake PyPI.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import decision_log_path, make_app
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import Dist, FakePyPI
from testbed.s3server import ENVIRON, MotoServer

JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}


class Replicas:
    """Replica ``a`` and ``b`` over one bucket."""

    def __init__(self, a: TestClient, b: TestClient, server: MotoServer, bucket: str) -> None:
        self.a, self.b = a, b
        self.server, self.bucket = server, bucket

    async def keys(self, prefix: str) -> list[str]:
        """The bucket's keys under ``prefix``, asked of the server directly."""
        def listing() -> str:
            url = f"{self.server.url}/{self.bucket}?list-type=2&prefix={prefix}"
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
                return str(resp.read().decode())

        body = await asyncio.to_thread(listing)
        return [part.split("</Key>")[0] for part in body.split("<Key>")[1:]]


@pytest.fixture
async def replicas(aiohttp_client: Any, tmp_path: Path, s3_server: MotoServer,
                   fake_pypi: FakePyPI) -> Replicas:
    bucket = s3_server.new_bucket()
    engine = FakeEngine()
    clients = []
    for name in ("a", "b"):
        settings = load_settings(None, environ={}, overrides={
            "server": {"replica": f"replica-{name}"},
            "storage": {"backend": "s3", "path": str(tmp_path / name),
                        "s3": s3_server.settings(bucket)},
            # Metadata revalidated on every request, so new versions show at once.
            "pypi": {"upstreams": [{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
                     "cache": {"metadata_ttl_s": 0.001}},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
        })
        assert decision_log_path(settings).name == f"decisions-replica-{name}.jsonl"
        app = make_app(settings, environ=ENVIRON, engine_factory=lambda _s: engine)
        clients.append(await aiohttp_client(app))
    return Replicas(clients[0], clients[1], s3_server, bucket)


async def _eventually(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def _file_fetches(upstream: FakePyPI, dist: Dist) -> int:
    return sum(1 for _, path in upstream.requests if path.endswith(dist.filename))


async def _download(client: TestClient, dist: Dist) -> tuple[bytes, str]:
    resp = await client.get(f"/pypi/files/demo/{dist.filename}")
    assert resp.status == 200, await resp.text()
    return await resp.read(), resp.headers.get("X-Stockade-Cache", "")


async def test_a_blob_stored_by_one_replica_is_served_by_the_other(
    replicas: Replicas, fake_pypi: FakePyPI, tmp_path: Path
) -> None:
    dist = fake_pypi.add_wheel("demo", "1.0", payload_bytes=300_000)
    body, cache = await _download(replicas.a, dist)
    assert hashlib.sha256(body).hexdigest() == dist.sha256 and cache == "miss"
    assert _file_fetches(fake_pypi, dist) == 1
    # b has no local copy: it streams the blob from the bucket, then keeps it.
    hot = tmp_path / "b" / "hot" / "sha256" / dist.sha256[:2] / dist.sha256
    assert not hot.exists()
    for _ in range(2):
        body, cache = await _download(replicas.b, dist)
        assert hashlib.sha256(body).hexdigest() == dist.sha256 and cache == "hit"
        # Kept once the response's last byte has gone, so soon after the client has it.
        await _eventually(hot.exists)
        assert hot.read_bytes() == dist.data
    assert _file_fetches(fake_pypi, dist) == 1
    ranged = await replicas.b.get(f"/pypi/files/demo/{dist.filename}",
                                  headers={"Range": "bytes=10-19"})
    assert ranged.status == 206 and await ranged.read() == dist.data[10:20]


async def test_two_replicas_filling_one_artifact_at_once_store_it_once(
    replicas: Replicas, fake_pypi: FakePyPI
) -> None:
    dist = fake_pypi.add_wheel("demo", "1.0", payload_bytes=2_000_000)
    (body_a, _), (body_b, _) = await asyncio.gather(
        _download(replicas.a, dist), _download(replicas.b, dist))
    assert hashlib.sha256(body_a).hexdigest() == hashlib.sha256(body_b).hexdigest() == dist.sha256
    assert await replicas.keys("blobs/") == [f"blobs/sha256/{dist.sha256[:2]}/{dist.sha256}"]
    assert len(await replicas.keys("records/artifacts/")) == 1


async def _first_seen(client: TestClient, version: str) -> str:
    resp = await client.get(f"/_stockade/explain/pypi/demo/{version}")
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["facts"]["first_seen_at"])


async def test_replicas_agree_on_first_seen_times(
    replicas: Replicas, fake_pypi: FakePyPI
) -> None:
    fake_pypi.add_wheel("demo", "1.0")
    first = await asyncio.gather(_first_seen(replicas.a, "1.0"), _first_seen(replicas.b, "1.0"))
    assert first[0] == first[1]
    # A version published later: each replica would take its own clock's time;
    # the one recorded first is the one both show.
    fake_pypi.add_wheel("demo", "2.0")
    seen_by_a = await _first_seen(replicas.a, "2.0")
    seen_by_b = await _first_seen(replicas.b, "2.0")
    assert seen_by_a == seen_by_b
    assert seen_by_a != first[0]
