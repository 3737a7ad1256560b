"""Maven ``.asc`` at the gate: for groupIds the policy names keys for, a signature by
one of them is required; keys and signatures are made here with pysequoia."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pysequoia
import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.state import SERVICES
from testbed.fakes.maven_upstream import FakeMaven

BASE = "com/acme/lib/1.0"
JAR = f"{BASE}/lib-1.0.jar"


@pytest.fixture(scope="module")
def signer() -> pysequoia.Tsk:
    return pysequoia.Tsk.generate("Release Manager <release@acme.example>")


@pytest.fixture
async def repo() -> AsyncIterator[FakeMaven]:
    fake = FakeMaven()
    fake.add("com.acme", "lib", "1.0")
    fake.add("org.other", "free", "1.0")
    await fake.start()
    yield fake
    await fake.stop()


def _asc(key: pysequoia.Tsk, data: bytes) -> bytes:
    signed: bytes = pysequoia.sign(key.signer(), data, mode=pysequoia.SignatureMode.DETACHED)
    return signed


async def _proxy(aiohttp_client: Any, tmp_path: Path, repo: FakeMaven,
                 signer: pysequoia.Tsk, extra: str = "", *,
                 reload_check_s: float = 5.0) -> TestClient:
    (tmp_path / "acme.asc").write_text(str(signer.extract_certificate()))
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  typosquat: {enabled: false}\n  provenance:\n"
                      "    pgp_keys: [{group: 'com.acme*', keys: [acme.asc]}]\n" + extra)
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "maven": {"upstreams": [{"name": "central", "url": repo.url, "retries": 0}]},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []},
        "policy": {"file": str(policy), "reload_check_s": reload_check_s},
    })
    client: TestClient = await aiohttp_client(make_app(settings, environ={}))
    return client


def _replace(path: Path, text: str) -> None:
    """``path`` rewritten in place, its modification time surely another."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


async def test_changed_key_file_is_picked_up_without_restart(
        aiohttp_client: Any, tmp_path: Path, repo: FakeMaven, signer: pysequoia.Tsk) -> None:
    repo.files[JAR + ".asc"] = _asc(signer, repo.files[JAR])
    stranger = pysequoia.Tsk.generate("Someone <someone@elsewhere.example>")
    # the policy's key file holds another key: the release manager's signature refuses
    client = await _proxy(aiohttp_client, tmp_path, repo, stranger, reload_check_s=0.05)
    refused = await client.get(f"/maven/{JAR}")
    assert refused.status == 403

    gate = client.app[SERVICES].gate
    revision = gate.revision
    await asyncio.to_thread(_replace, tmp_path / "acme.asc", str(signer.extract_certificate()))
    for _ in range(600):
        if gate.revision != revision:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the changed key file was never picked up")
    resp = await client.get(f"/maven/{JAR}")
    assert resp.status == 200, resp.reason  # checked again under the new key
    assert await resp.read() == repo.files[JAR]
    assert client.app[SERVICES].provenance.verifications == 2


async def test_signed_artifact_is_served_and_checked_once(
        aiohttp_client: Any, tmp_path: Path, repo: FakeMaven, signer: pysequoia.Tsk) -> None:
    repo.files[JAR + ".asc"] = _asc(signer, repo.files[JAR])
    client = await _proxy(aiohttp_client, tmp_path, repo, signer)
    for _ in range(2):
        resp = await client.get(f"/maven/{JAR}")
        assert resp.status == 200
        assert await resp.read() == repo.files[JAR]
    assert repo.count("lib-1.0.jar.asc") == 1
    free = await client.get("/maven/org/other/free/1.0/free-1.0.jar")
    assert free.status == 200  # no keys named for its group: not checked
    assert repo.count("free-1.0.jar.asc") == 0


async def test_unsigned_or_foreign_signature_is_refused(
        aiohttp_client: Any, tmp_path: Path, repo: FakeMaven, signer: pysequoia.Tsk) -> None:
    client = await _proxy(aiohttp_client, tmp_path, repo, signer)
    unsigned = await client.get(f"/maven/{JAR}")
    assert unsigned.status == 403
    assert "has no OpenPGP signature" in (unsigned.reason or "")
    stranger = pysequoia.Tsk.generate("Someone <someone@elsewhere.example>")
    pom = f"{BASE}/lib-1.0.pom"
    repo.files[pom + ".asc"] = _asc(stranger, repo.files[pom])
    foreign = await client.get(f"/maven/{pom}")
    assert foreign.status == 403
    assert "(rule provenance)" in (foreign.reason or "")
    assert "mismatch" in (foreign.reason or "")



async def test_refused_artifact_is_not_fetched_to_check_it(
        aiohttp_client: Any, tmp_path: Path, repo: FakeMaven, signer: pysequoia.Tsk) -> None:
    repo.files[JAR + ".asc"] = _asc(signer, repo.files[JAR])
    client = await _proxy(aiohttp_client, tmp_path, repo, signer,
                          extra="  lists:\n    deny:\n      - {ecosystem: maven, "
                                "name: 'com.acme:lib', versions: '[1.0]', reason: banned, "
                                "owner: security}\n")
    resp = await client.get(f"/maven/{JAR}")
    assert resp.status == 403
    assert "banned" in (resp.reason or "")
    # the jar's response was opened for the checksum and date its headers carry
    # (as its checksum file was asked for before), and closed unread: not stored
    assert repo.count("lib-1.0.jar") == 1 and repo.count("lib-1.0.jar.asc") == 0
    blobs = {p.name for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()}
    assert hashlib.sha256(repo.files[JAR]).hexdigest() not in blobs
