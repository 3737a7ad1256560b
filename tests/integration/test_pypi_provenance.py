"""PyPI PEP 740 provenance through stockade, from the real fixtures.

The fake index publishes sampleproject-4.0.0.tar.gz with the real provenance object
(``../shared/fixtures/pypi/provenance``) and the real file's sha256 on its page; the
real bytes are not available offline, so an allowed download gets past admission
and then fails the digest check (a HEAD, which verifies the whole file before
answering, is a 502); a refused one is a 403 before any byte is fetched.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.pypi_upstream import Dist, FakePyPI
from tests.unit.proxy.provenance.shared import fixture

REAL_SHA256 = "0ace7980f82c5815ede4cd7bf9f6693684cec2ae47b9b7ade9add533b8627c6b"
JSON_V1 = "application/vnd.pypi.simple.v1+json"


def _sampleproject(index: FakePyPI, sha256: str = REAL_SHA256) -> Dist:
    dist = index.add_sdist("sampleproject", "4.0.0")
    assert dist.filename == "sampleproject-4.0.0.tar.gz"
    dist.provenance = fixture("pypi/provenance/sampleproject-4.0.0.tar.gz.provenance.json"
                              ).read_bytes()
    dist.published_sha256 = sha256
    return dist


async def _proxy(aiohttp_client: Any, tmp_path: Path, index: FakePyPI,
                 provenance: str, *, metadata_ttl_s: float = 300.0) -> TestClient:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  typosquat: {enabled: false}\n"
        f"  provenance: {{{provenance}, trusted_root: "
        f"{fixture('sigstore/trusted_root.production.json')}}}\n")
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": index.url, "retries": 0}],
                 "cache": {"metadata_ttl_s": metadata_ttl_s}},
        "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "policy": {"file": str(policy)},
    })
    client: TestClient = await aiohttp_client(make_app(settings, environ={}))
    return client


async def _counted(client: TestClient, result: str) -> float:
    text = await (await client.get("/metrics")).text()
    line = f'stockade_provenance_total{{ecosystem="pypi",kind="attestation",result="{result}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_provenance_url_served_through_stockade(aiohttp_client: Any, tmp_path: Path,
                                                      fake_pypi: FakePyPI) -> None:
    dist = _sampleproject(fake_pypi)
    client = await _proxy(aiohttp_client, tmp_path, fake_pypi, "attestations: verify")
    page = await (await client.get("/pypi/simple/sampleproject/",
                                   headers={"Accept": JSON_V1})).json(content_type=None)
    [entry] = page["files"]
    origin = str(client.make_url("/")).rstrip("/")
    assert entry["provenance"] == \
        f"{origin}/pypi/provenance/sampleproject/sampleproject-4.0.0.tar.gz"
    html = await (await client.get("/pypi/simple/sampleproject/")).text()
    assert f'data-provenance="{entry["provenance"]}"' in html
    served = await client.get("/pypi/provenance/sampleproject/sampleproject-4.0.0.tar.gz")
    assert served.status == 200
    assert await served.read() == dist.provenance
    assert (await client.get("/pypi/provenance/sampleproject/nothing-1.0.tar.gz")).status == 404


async def test_valid_provenance_is_verified_and_allowed(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    _sampleproject(fake_pypi)
    client = await _proxy(aiohttp_client, tmp_path, fake_pypi,
                          "attestations: require, identities: [{ecosystem: pypi, "
                          "name: sampleproject, repository: pypa/sampleproject}]")
    url = "/pypi/files/sampleproject/sampleproject-4.0.0.tar.gz"
    for _ in range(2):
        resp = await client.head(url)
        assert resp.status == 502  # past admission: the fake's bytes are not the real ones
        assert "does not match its published digest" in (resp.reason or "")
    assert await _counted(client, "verified") == 2
    assert fake_pypi.count("/provenance") == 1  # fetched and verified once


async def test_provenance_for_other_bytes_is_refused(aiohttp_client: Any, tmp_path: Path,
                                                     fake_pypi: FakePyPI) -> None:
    _sampleproject(fake_pypi, sha256="ab" * 32)
    client = await _proxy(aiohttp_client, tmp_path, fake_pypi, "attestations: verify")
    resp = await client.get("/pypi/files/sampleproject/sampleproject-4.0.0.tar.gz")
    assert resp.status == 403
    assert "provenance that does not match the artifact" in (resp.reason or "")
    assert fake_pypi.count("sampleproject-4.0.0.tar.gz") == 0
    assert await _counted(client, "mismatch") == 1


async def test_file_without_provenance_refused_under_require(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    dist = fake_pypi.add_wheel("plainpkg", "1.0")
    client = await _proxy(aiohttp_client, tmp_path, fake_pypi, "attestations: require")
    resp = await client.get(f"/pypi/files/plainpkg/{dist.filename}")
    assert resp.status == 403
    assert resp.reason is not None
    assert resp.reason.startswith("Blocked by stockade: plainpkg 1.0 has no")
    assert "(rule provenance)" in resp.reason



async def test_downgrade_hidden_from_the_page_on_first_sight(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    attested = fake_pypi.add_wheel("stockade-dg", "1.0", upload_time="2024-01-01T00:00:00Z")
    attested.provenance = b"{}"  # only its presence on the page counts here
    later = fake_pypi.add_wheel("stockade-dg", "1.1", upload_time="2024-02-01T00:00:00Z")
    client = await _proxy(aiohttp_client, tmp_path, fake_pypi,
                          "attestations: verify, downgrade: refuse")
    page = await (await client.get("/pypi/simple/stockade-dg/")).text()
    assert attested.filename in page and later.filename not in page
    refused = await client.get(f"/pypi/files/stockade-dg/{later.filename}")
    assert refused.status == 403
    assert "1.0, published before it, had provenance" in (refused.reason or "")


async def test_downgrade_counts_a_version_stockade_verified(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    dist = _sampleproject(fake_pypi)
    dist.upload_time = "2024-06-01T00:00:00Z"
    later = fake_pypi.add_sdist("sampleproject", "4.0.1", upload_time="2024-07-01T00:00:00Z")
    client = await _proxy(aiohttp_client, tmp_path, fake_pypi,
                          "attestations: verify, downgrade: refuse", metadata_ttl_s=0.05)
    resp = await client.head("/pypi/files/sampleproject/sampleproject-4.0.0.tar.gz")
    assert resp.status == 502  # past admission (see the module doc): verified, recorded
    assert await _counted(client, "verified") == 1

    dist.provenance = None  # the index no longer publishes 4.0.0's provenance
    for _ in range(600):  # until the proxy has fetched the changed page (a short TTL)
        page = await (await client.get("/pypi/simple/sampleproject/",
                                       headers={"Accept": JSON_V1})).json(content_type=None)
        if all(f.get("provenance") is None for f in page["files"]):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the proxy kept serving the page that claims provenance")
    assert [f["filename"] for f in page["files"]] == ["sampleproject-4.0.0.tar.gz"]
    refused = await client.get(f"/pypi/files/sampleproject/{later.filename}")
    assert refused.status == 403
    assert ("sampleproject 4.0.1 has no verified provenance, but 4.0.0, published before "
            "it, had provenance (verified by stockade)") in (refused.reason or "")
    assert fake_pypi.count(later.filename) == 0
