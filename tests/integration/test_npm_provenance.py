"""npm provenance at the gate, from the real fixtures in ``../shared/fixtures/npm``.

The fake registry serves packuments whose versions carry the real ``dist.integrity``,
``dist.signatures`` and attestations documents of sigstore@1.0.0, kms-demo@1.0.0 and
@playwright/cli@0.1.1. The real tarballs are not available offline, so the fake's
tarball bytes do not match the real integrity: a request the policy allows gets past
admission and then fails the digest check (asked with a Range, which makes stockade
verify the whole file before answering: a 502, nothing stored); a request the
policy refuses is a 403 before any byte is fetched. The provenance results are read
from ``stockade_provenance_total``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.cli import main
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm
from tests.unit.proxy.provenance.shared import fixture, flip

PLAYWRIGHT = ("sha512-9k11ZfDwAfMVDDIuEVW1Wvs8SoDNXIY1dNQ+9C9/SS8ZmElkcxesu5eoL7vNa96ntibUGaq1TM2q"
              "Qoqvdl/I9g==")


def _case(name: str) -> dict[str, Any]:
    cases = json.loads(fixture("npm/dist-signatures.json").read_text())["cases"]
    found: dict[str, Any] = next(c for c in cases if c["name"] == name)
    return found


@pytest.fixture
async def registry() -> AsyncIterator[FakeNpm]:
    fake = FakeNpm()
    await fake.start()
    yield fake
    await fake.stop()


def _real(registry: FakeNpm, name: str, *, forged: bool = False, time: str) -> str:
    """Publish ``name``@1.0.0 with the real integrity and signatures of the fixture."""
    case = _case(name)
    registry.publish(name, case["version"], time=time)
    signatures = case["signatures"]
    if forged:
        signatures = [{**signatures[0], "sig": flip(signatures[0]["sig"])}]
    registry.dist_overrides[(name, case["version"])] = {
        "integrity": case["integrity"], "shasum": None, "signatures": signatures,
        "attestations": None,
    }
    return f"/npm/{name}/-/{name}-{case['version']}.tgz"


def _playwright(registry: FakeNpm) -> str:
    registry.publish("@playwright/cli", "0.1.1", time="2026-01-20T00:00:00.000Z")
    spec = "@playwright%2fcli@0.1.1"
    registry.dist_overrides[("@playwright/cli", "0.1.1")] = {
        "integrity": PLAYWRIGHT, "shasum": None, "signatures": None,
        "attestations": {"url": f"{registry.url}-/npm/v1/attestations/{spec}",
                         "provenance": {"predicateType": "https://slsa.dev/provenance/v1"}},
    }
    registry.attestation_docs["@playwright/cli@0.1.1"] = json.loads(
        fixture("npm/attestations/playwright-cli-0.1.1.json").read_text())
    return "/npm/@playwright/cli/-/cli-0.1.1.tgz"


async def _proxy(aiohttp_client: Any, tmp_path: Path, registry: FakeNpm, provenance: str,
                 *, pinned_keys: bool = True, metadata_ttl_s: float = 300.0,
                 keys_file: Path | None = None, root: Path | None = None,
                 reload_check_s: float = 5.0) -> TestClient:
    keys_file = keys_file or fixture("npm/registry-keys.json")
    keys = f", npm_keys: {keys_file}" if pinned_keys else ""
    root = root or fixture("sigstore/trusted_root.production.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  typosquat: {enabled: false}\n"
        f"  provenance: {{{provenance}, trusted_root: {root}{keys}}}\n")
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "npm": {"upstreams": [{"name": "npmjs", "url": registry.url, "retries": 0}],
                "cache": {"metadata_ttl_s": metadata_ttl_s}},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "policy": {"file": str(policy), "reload_check_s": reload_check_s},
    })
    client: TestClient = await aiohttp_client(make_app(settings, environ={}))
    return client


async def _counted(client: TestClient, kind: str, result: str) -> float:
    text = await (await client.get("/metrics")).text()
    line = (f'stockade_provenance_total{{ecosystem="npm",kind="{kind}",'
            f'result="{result}"}} ')
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def _allowed(client: TestClient, url: str) -> None:
    """Past admission: the fake's bytes then fail the real integrity (see module doc)."""
    resp = await client.get(url, headers={"Range": "bytes=0-0"})
    assert resp.status == 502, await resp.text()
    assert "does not match its published digest" in (await resp.json())["error"]


async def test_valid_signature_is_verified_and_allowed(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    url = _real(registry, "sigstore", time="2023-02-01T00:00:00.000Z")
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: off")
    await _allowed(client, url)
    await _allowed(client, url)
    assert await _counted(client, "signature", "verified") == 2
    assert client.app[SERVICES].provenance.verifications == 1  # once per digest


async def test_forged_signature_is_refused(aiohttp_client: Any, tmp_path: Path,
                                           registry: FakeNpm) -> None:
    url = _real(registry, "sigstore", forged=True, time="2023-02-01T00:00:00.000Z")
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: off")
    resp = await client.get(url)
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert "bad npm registry signature" in error and "(rule provenance)" in error
    assert registry.count("sigstore-1.0.0.tgz") == 0
    assert await _counted(client, "signature", "invalid") == 1


async def test_signature_by_an_expired_key_is_refused(aiohttp_client: Any, tmp_path: Path,
                                                      registry: FakeNpm) -> None:
    # the same real signature, on a version said to be published after the key expired
    url = _real(registry, "sigstore", time="2025-06-01T00:00:00.000Z")
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: off")
    resp = await client.get(url)
    assert resp.status == 403
    assert "expired" in (await resp.json())["error"]


async def test_attested_package_passes_attestations_require(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    url = _playwright(registry)
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: require", pinned_keys=False)
    registry.keys_doc = json.loads(fixture("npm/registry-keys.json").read_text())
    await _allowed(client, url)
    await _allowed(client, url)
    assert await _counted(client, "attestation", "verified") == 2
    assert registry.count("/-/npm/v1/keys") == 1  # fetched once, then kept
    assert registry.count("/-/npm/v1/attestations/@playwright%2fcli@0.1.1") + \
        registry.count("/-/npm/v1/attestations/@playwright/cli@0.1.1") == 1


async def test_identity_from_elsewhere_is_refused(aiohttp_client: Any, tmp_path: Path,
                                                  registry: FakeNpm) -> None:
    url = _playwright(registry)
    client = await _proxy(
        aiohttp_client, tmp_path, registry,
        "identities: [{ecosystem: npm, name: '@playwright/cli', "
        "repository: 'https://github.com/evil/playwright-cli'}]")
    resp = await client.get(url)
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert "was built from https://github.com/microsoft/playwright-cli" in error
    assert "not https://github.com/evil/playwright-cli (rule provenance)" in error


async def test_missing_attestation_under_require_is_refused(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    url = _real(registry, "kms-demo", time="2023-02-01T00:00:00.000Z")
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: require")
    resp = await client.get(url)
    assert resp.status == 403
    error = (await resp.json())["error"]
    # the packument claims none: refused on that, before anything is verified
    assert error == ("Blocked by stockade: kms-demo 1.0.0 has no provenance, and the policy "
                     "requires it (attestations: require) (rule provenance)")
    assert registry.count("kms-demo-1.0.0.tgz") == 0
    assert await _counted(client, "signature", "verified") == 0


async def test_claimed_attestations_that_are_absent_are_refused_under_require(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    url = _real(registry, "kms-demo", time="2023-02-01T00:00:00.000Z")
    spec = "kms-demo@1.0.0"
    registry.dist_overrides[("kms-demo", "1.0.0")]["attestations"] = {
        "url": f"{registry.url}-/npm/v1/attestations/{spec}"}
    registry.attestation_docs[spec] = {"attestations": []}
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: require")
    resp = await client.get(url)
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error.startswith("Blocked by stockade: kms-demo 1.0.0 has no verified provenance "
                            "(missing: attestations: the document lists none)")
    assert await _counted(client, "signature", "verified") == 1
    assert await _counted(client, "attestation", "missing") == 1


async def test_downgrade_is_hidden_on_first_sight(aiohttp_client: Any, tmp_path: Path,
                                                  registry: FakeNpm) -> None:
    registry.publish("left-pads", "1.0.0", time="2024-01-01T00:00:00.000Z")
    registry.publish("left-pads", "1.1.0", time="2024-02-01T00:00:00.000Z")
    registry.dist_overrides[("left-pads", "1.1.0")] = {"attestations": None}
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: off, attestations: verify, downgrade: refuse")
    resp = await client.get("/npm/left-pads")
    doc = await resp.json()
    assert list(doc["versions"]) == ["1.0.0"]
    assert "provenance" in resp.headers["X-Stockade-Filtered"]


async def test_downgrade_counts_versions_stockade_verified(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    old = _playwright(registry)
    registry.publish("@playwright/cli", "0.1.2", time="2026-02-01T00:00:00.000Z")
    registry.dist_overrides[("@playwright/cli", "0.1.2")] = {"attestations": None}
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: off, attestations: verify, downgrade: refuse",
                          metadata_ttl_s=0.05)
    await _allowed(client, old)  # 0.1.1's attestation verified, and recorded
    assert await _counted(client, "attestation", "verified") == 1

    # the upstream's metadata no longer claims provenance for 0.1.1
    registry.dist_overrides[("@playwright/cli", "0.1.1")]["attestations"] = None
    for _ in range(600):  # until the proxy has fetched the stripped packument (short TTL)
        doc = await (await client.get("/npm/@playwright/cli")).json()
        if "attestations" not in doc["versions"]["0.1.1"]["dist"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the proxy kept serving the packument that claims provenance")
    assert list(doc["versions"]) == ["0.1.1"]  # 0.1.2 hidden from the listing too
    resp = await client.get("/npm/@playwright/cli/-/cli-0.1.2.tgz")
    assert resp.status == 403, await resp.text()
    assert (await resp.json())["error"] == (
        "Blocked by stockade: @playwright/cli 0.1.2 has no verified provenance, but 0.1.1, "
        "published before it, had provenance (verified by stockade) (rule provenance)")
    assert registry.count("cli-0.1.2.tgz") == 0


async def _warnings(client: TestClient) -> float:
    text = await (await client.get("/metrics")).text()
    labels = ('ecosystem="npm"', 'rule="provenance"', 'decision="warn"')
    found = [row for row in text.splitlines()
             if row.startswith("stockade_policy_decisions_total{")
             and all(label in row for label in labels)]
    return sum(float(row.split()[-1]) for row in found)


async def _decisions(path: Path, rule: str) -> list[dict[str, Any]]:
    """The decision log's records of ``rule``, once one is written (polled)."""
    for _ in range(400):
        found = []
        if path.is_file():
            found = [r for line in path.read_text().splitlines() if line.strip()
                     and (r := json.loads(line)).get("rule") == rule]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


async def test_old_format_attestation_is_recorded_and_warned_once(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    # npm 9's 2023 bundles: sigstore-python cannot load them; served under verify
    url = _real(registry, "sigstore", time="2023-02-01T00:00:00.000Z")
    spec = "sigstore@1.0.0"
    registry.dist_overrides[("sigstore", "1.0.0")]["attestations"] = {
        "url": f"{registry.url}-/npm/v1/attestations/{spec}"}
    registry.attestation_docs[spec] = json.loads(
        fixture("npm/attestations/sigstore-1.0.0.json").read_text())
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: verify")
    for _ in range(3):
        await _allowed(client, url)
    assert await _counted(client, "attestation", "unverifiable") == 3
    assert client.app[SERVICES].provenance.verifications == 2  # a signature, an attestation
    assert registry.count("/-/npm/v1/attestations/sigstore@1.0.0") == 1
    assert await _warnings(client) == 1  # the first request warns; the others pay nothing
    [record] = await _decisions(tmp_path / "data" / "decisions.jsonl", "provenance")
    assert record["decision"] == "warn"
    assert "provenance stockade cannot check" in record["reason"]
    # explain still shows the warning: it decides on the recorded result
    body = await (await client.get("/_stockade/explain/npm/sigstore/1.0.0")).json()
    assert body["decision"]["decision"] == "warn", body["decision"]


async def _reloaded(client: TestClient, revision: str) -> None:
    """Until the server has put a policy revision other than ``revision`` in force."""
    gate = client.app[SERVICES].gate
    for _ in range(600):
        if gate.revision != revision:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the changed trust file was never picked up")


def _replace(path: Path, data: bytes) -> None:
    """``path`` rewritten in place, its modification time surely another."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before + 10**9, before + 10**9))


async def test_changed_npm_keys_file_is_picked_up_without_restart(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    url = _real(registry, "sigstore", time="2023-02-01T00:00:00.000Z")
    real = json.loads(fixture("npm/registry-keys.json").read_text())
    # the key the signature names, said to have expired before the version was published
    wrong = {"keys": [{**real["keys"][0], "expires": "2022-01-01T00:00:00.000Z"}]}
    keys_file = tmp_path / "npm-keys.json"
    keys_file.write_text(json.dumps(wrong))
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: off", keys_file=keys_file,
                          reload_check_s=0.05)
    resp = await client.get(url)
    assert resp.status == 403
    assert "expired" in (await resp.json())["error"]

    revision = client.app[SERVICES].gate.revision
    await asyncio.to_thread(_replace, keys_file, json.dumps(real).encode())
    await _reloaded(client, revision)
    await _allowed(client, url)  # verified again under the new keys, not the old result
    assert await _counted(client, "signature", "verified") == 1
    assert client.app[SERVICES].provenance.verifications == 2


async def test_changed_trusted_root_is_picked_up_without_restart(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm) -> None:
    url = _playwright(registry)
    root = tmp_path / "trusted_root.json"
    root.write_bytes(fixture("sigstore/trusted_root.staging.json").read_bytes())
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: off, attestations: verify", root=root,
                          reload_check_s=0.05)
    resp = await client.get(url)
    assert resp.status == 403  # a production bundle does not verify under staging
    assert "has provenance that fails verification" in (await resp.json())["error"]

    revision = client.app[SERVICES].gate.revision
    await asyncio.to_thread(_replace, root,
                            fixture("sigstore/trusted_root.production.json").read_bytes())
    await _reloaded(client, revision)
    await _allowed(client, url)
    assert await _counted(client, "attestation", "verified") == 1
    assert client.app[SERVICES].provenance.verifications == 2


async def test_explain_and_check_show_what_the_server_verified(
        aiohttp_client: Any, tmp_path: Path, registry: FakeNpm,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = _real(registry, "sigstore", forged=True, time="2023-02-01T00:00:00.000Z")
    client = await _proxy(aiohttp_client, tmp_path, registry,
                          "signatures: verify, attestations: off")
    assert (await client.get(url)).status == 403

    body = await (await client.get("/_stockade/explain/npm/sigstore/1.0.0")).json()
    [result] = body["facts"]["provenance"]
    assert (result["kind"], result["result"]) == ("signature", "invalid")
    assert body["facts"]["provenance_claimed"] is False
    assert body["decision"]["rule"] == "provenance" and body["decision"]["refuses"]

    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}]},
        "policy": {"file": str(tmp_path / "policy.yaml")},
    }))
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["check", "npm", "sigstore@1.0.0", "--config",
                                          str(config), "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and line["rule"] == "provenance"
    assert line["provenance"][0]["result"] == "invalid"
