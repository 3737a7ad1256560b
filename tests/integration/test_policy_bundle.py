"""Signed policy bundles: a replica pulls them from a TUF repository the test builds and
serves on loopback, applies new ones, and refuses every attack TUF names, keeping the
policy in force."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata

from stockade.config.load import load_settings
from stockade.fleet.bundle import build_bundle
from stockade.fleet.tufrepo import (
    RepositoryError,
    Signers,
    generate_key,
    init_repository,
    load_signer,
    publish,
    refresh_timestamp,
)
from stockade.policy.approvals import approve
from stockade.policy.model import Ecosystem
from stockade.proxy.app import make_app
from stockade.proxy.bundlepull import BundlePuller
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.static import StaticHost

ROLES = ("root", "targets", "snapshot", "timestamp")


async def wait_for(condition: Any, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


@dataclass
class Fleet:
    """A repository with bundle v1 (denies left-pad) published, its host, its keys."""

    tmp: Path
    repo: Path
    host: StaticHost
    npm: FakeNpm
    signers: Signers
    url: str = ""

    def bundle(self, version: int, deny: str) -> Path:
        policy = self.tmp / f"policy-{version}.yaml"
        policy.write_text("rules:\n  lists:\n    deny:\n      - {ecosystem: npm, "
                          f"name: {deny}, reason: banned in v{version}}}\n")
        return build_bundle(policy, self.tmp / f"bundle-{version}.tar.gz").path

    def publish(self, version: int, deny: str) -> None:
        publish(self.repo, self.bundle(version, deny), self.signers)

    def settings(self, data: str = "data") -> Any:
        return load_settings(None, environ={}, overrides={
            "storage": {"path": str(self.tmp / data)},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": self.npm.url}]},
            "policy": {"reload_check_s": 0, "bundle": {
                "url": self.url, "interval": 3600,
                "trusted_root": str(self.repo / "metadata" / "1.root.json")}},
        })


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    keys = {}
    for role in (*ROLES, "targets2", "timestamp2"):
        generate_key(tmp_path / f"{role}.pem")
        keys[role] = load_signer(tmp_path / f"{role}.pem")
    repo = tmp_path / "repo"
    # targets and timestamp need two signatures each: below that is refused.
    init_repository(repo, root_signers=[keys["root"]], keys={
        "targets": [keys["targets"].public_key, keys["targets2"].public_key],
        "snapshot": [keys["snapshot"].public_key],
        "timestamp": [keys["timestamp"].public_key, keys["timestamp2"].public_key],
    }, thresholds={"targets": 2, "timestamp": 2})
    signers = Signers(targets=[keys["targets"], keys["targets2"]],
                      snapshot=[keys["snapshot"]],
                      timestamp=[keys["timestamp"], keys["timestamp2"]])
    npm = await FakeNpm().start()
    npm.publish("left-pad", "1.0.0")
    npm.publish("is-odd", "1.0.0")
    host = await StaticHost(root=repo).start()
    f = Fleet(tmp_path, repo, host, npm, signers, host.url)
    f.publish(1, "left-pad")
    try:
        yield f
    finally:
        await host.stop()
        await npm.stop()


def sample(client: Any, name: str, labels: dict[str, str] | None = None) -> float | None:
    value: float | None = client.app[SERVICES].metrics.registry.get_sample_value(
        name, labels or {})
    return value


async def status(client: Any, name: str) -> int:
    return int((await client.get(f"/npm/{name}")).status)


async def started(aiohttp_client: Any, fleet: Fleet,
                  data: str = "data") -> tuple[Any, BundlePuller]:
    client = await aiohttp_client(make_app(fleet.settings(data), environ={}))
    puller = client.app[SERVICES].bundle
    assert puller is not None
    return client, puller


async def applied_v1(aiohttp_client: Any, fleet: Fleet) -> tuple[Any, BundlePuller]:
    client, puller = await started(aiohttp_client, fleet)
    await wait_for(lambda: sample(client, "stockade_bundle_version") == 1)
    assert await status(client, "left-pad") == 403
    assert await status(client, "is-odd") == 200
    return client, puller


async def refused(client: Any, puller: BundlePuller, reason: str) -> None:
    """One pull fails with ``reason``, counted; bundle v1's policy stays in force."""
    revision = client.app[SERVICES].gate.revision
    assert await puller.pull() == reason
    assert sample(client, "stockade_bundle_errors_total", {"reason": reason}) == 1
    assert client.app[SERVICES].gate.revision == revision
    assert sample(client, "stockade_bundle_version") == 1
    assert await status(client, "left-pad") == 403
    assert await status(client, "is-odd") == 200


async def test_v1_is_pulled_then_v2_applies(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    revision = client.app[SERVICES].gate.revision
    assert await puller.pull() is None  # nothing new: nothing swapped
    assert client.app[SERVICES].gate.revision == revision

    fleet.publish(2, "is-odd")
    assert await puller.pull() is None
    assert sample(client, "stockade_bundle_version") == 2
    assert await status(client, "left-pad") == 200
    assert await status(client, "is-odd") == 403
    text = await (await client.get("/metrics")).text()
    assert "stockade_bundle_version 2.0" in text
    assert "stockade_bundle_age_seconds" in text


async def test_rolled_back_repository_is_refused(aiohttp_client: Any, fleet: Fleet) -> None:
    old = fleet.tmp / "repo-v1"
    shutil.copytree(fleet.repo, old)
    client, puller = await started(aiohttp_client, fleet)
    fleet.publish(2, "is-odd")
    await wait_for(lambda: sample(client, "stockade_bundle_version") is not None)
    assert await puller.pull() is None
    assert sample(client, "stockade_bundle_version") == 2
    fleet.host.root = old  # the mirror now serves the older, looser state
    revision = client.app[SERVICES].gate.revision
    assert await puller.pull() == "rollback"
    assert sample(client, "stockade_bundle_errors_total", {"reason": "rollback"}) == 1
    assert client.app[SERVICES].gate.revision == revision
    assert await status(client, "is-odd") == 403


async def test_expired_timestamp_is_refused(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    fleet.publish(2, "is-odd")
    refresh_timestamp(fleet.repo, fleet.signers.timestamp, expires=timedelta(minutes=-5))
    await refused(client, puller, "expired")


async def test_mismatched_snapshot_is_refused(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    fleet.publish(2, "is-odd")
    meta = fleet.repo / "metadata"
    # the timestamp names snapshot 2; the host serves snapshot 1's bytes under that name
    shutil.copyfile(meta / "1.snapshot.json", meta / "2.snapshot.json")
    await refused(client, puller, "mix_and_match")


async def test_target_with_the_wrong_hash_is_refused(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    fleet.publish(2, "is-odd")
    targets = Metadata.from_file(str(fleet.repo / "metadata" / "2.targets.json")).signed
    sha256 = targets.targets["bundle.tar.gz"].hashes["sha256"]
    served = fleet.repo / "targets" / f"{sha256}.bundle.tar.gz"
    swapped = bytearray(served.read_bytes())
    swapped[-1] ^= 0xFF
    served.write_bytes(bytes(swapped))
    await refused(client, puller, "target_hash")


async def test_signature_below_threshold_is_refused(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    fleet.publish(2, "is-odd")
    path = fleet.repo / "metadata" / "timestamp.json"
    stamp = Metadata.from_file(str(path))
    stamp.signed.version += 1
    stamp.sign(fleet.signers.timestamp[0], append=False)  # one of the two required
    stamp.to_file(str(path))
    await refused(client, puller, "signature")


def test_publish_refuses_to_sign_below_threshold(fleet: Fleet) -> None:
    short = Signers(targets=fleet.signers.targets[:1], snapshot=fleet.signers.snapshot,
                    timestamp=fleet.signers.timestamp)
    with pytest.raises(RepositoryError, match="threshold is 2"):
        publish(fleet.repo, fleet.bundle(2, "is-odd"), short)


async def test_server_down_keeps_the_last_good_bundle_and_its_age_grows(
        aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    await fleet.host.stop()
    first = sample(client, "stockade_bundle_age_seconds")
    assert first is not None
    await refused(client, puller, "unreachable")
    await wait_for(lambda: (sample(client, "stockade_bundle_age_seconds") or 0) > first + 0.05)

    # A restart while the server is down starts from the last good bundle.
    await client.close()
    again, _ = await started(aiohttp_client, fleet)
    assert sample(again, "stockade_bundle_version") == 1
    assert await status(again, "left-pad") == 403


async def test_a_bundle_carries_its_osv_snapshot(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    intel = fleet.tmp / "intel"
    intel.mkdir()
    (intel / "MAL-2099-0009.json").write_text(json.dumps({
        "id": "MAL-2099-0009", "modified": "2099-01-01T00:00:00Z",
        "summary": "Malicious code in is-odd (npm)",
        "affected": [{"package": {"ecosystem": "npm", "name": "is-odd"},
                      "versions": ["1.0.0"]}]}))
    policy = fleet.tmp / "policy-osv.yaml"
    policy.write_text("rules:\n  osv: {paths: [intel/]}\n")
    publish(fleet.repo, build_bundle(policy, fleet.tmp / "bundle-osv.tar.gz").path,
            fleet.signers)
    shutil.rmtree(intel)  # the replica reads the bundle's copy, not this folder
    assert await puller.pull() is None
    assert sample(client, "stockade_bundle_version") == 2
    refused = await client.get("/npm/is-odd/-/is-odd-1.0.0.tgz")
    assert refused.status == 403
    assert "MAL-2099-0009" in (await refused.json())["error"]
    assert await status(client, "left-pad") == 200


async def test_an_air_gapped_replica_pulls_from_a_folder(aiohttp_client: Any,
                                                         fleet: Fleet) -> None:
    fleet.url = fleet.repo.as_uri() + "/"  # removable media: no HTTP at all
    client, puller = await started(aiohttp_client, fleet)
    await wait_for(lambda: sample(client, "stockade_bundle_version") == 1)
    assert await status(client, "left-pad") == 403
    fleet.publish(2, "is-odd")
    assert await puller.pull() is None
    assert await status(client, "is-odd") == 403
    (fleet.repo / "metadata" / "timestamp.json").unlink()  # the stick was pulled out
    assert await puller.pull() == "unreachable"
    assert await status(client, "is-odd") == 403
    assert fleet.host.requests == []  # nothing went over HTTP


async def test_an_approval_travels_in_the_bundle(aiohttp_client: Any, fleet: Fleet) -> None:
    client, puller = await applied_v1(aiohttp_client, fleet)
    two_days = (datetime.now(UTC) - timedelta(days=2, hours=1)).isoformat()
    fleet.npm.publish("axios-2", "1.0.0", time=two_days)
    fleet.npm.created["axios-2"] = two_days
    policy = fleet.tmp / "policy-squat.yaml"
    policy.write_text("rules:\n  typosquat: {approvals: approvals.yaml}\n")
    approvals = fleet.tmp / "approvals.yaml"
    publish(fleet.repo, build_bundle(policy, fleet.tmp / "bundle-held.tar.gz").path,
            fleet.signers)
    assert await puller.pull() is None
    held = await client.get("/npm/axios-2")
    assert held.status == 403 and "held until" in (await held.json())["error"]

    approve(approvals, Ecosystem.NPM, "axios-2", reason="vendored fork", by="alice")
    publish(fleet.repo, build_bundle(policy, fleet.tmp / "bundle-approved.tar.gz").path,
            fleet.signers)
    approvals.unlink()  # the replica reads the bundle's copy, not this file
    assert await puller.pull() is None
    assert sample(client, "stockade_bundle_version") == 3
    assert (await client.get("/npm/axios-2")).status == 200
    assert (await client.get("/npm/axios-2/-/axios-2-1.0.0.tgz")).status == 200
