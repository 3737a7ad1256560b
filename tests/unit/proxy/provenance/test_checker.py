"""The provenance service: once per digest, kept across restarts, bounded in time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stockade.policy.engine import build_engine
from stockade.policy.file import parse_policy
from stockade.policy.model import (
    BuildIdentity,
    Ecosystem,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
)
from stockade.proxy.metrics import Metrics
from stockade.proxy.provenance.checker import (
    ProvenanceChecker,
    TransientError,
    from_record,
    provenance_rule,
    to_record,
)
from stockade.storage.refs import RefStore

K, S = ProvenanceKind, ProvenanceStatus
VERIFIED = ProvenanceResult(K.ATTESTATION, S.VERIFIED,
                            BuildIdentity(Publisher.GITHUB, "https://github.com/o/r",
                                          ".github/workflows/x.yml", "refs/tags/v1", "s"),
                            "built from https://github.com/o/r")


def counted(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "stockade_provenance_total", {"ecosystem": "npm", "kind": "attestation",
                                      "result": result})
    return value or 0.0


async def test_verified_once_per_digest_and_kept_across_restarts(tmp_path: Path) -> None:
    calls = []

    async def compute() -> ProvenanceResult:
        calls.append(1)
        await asyncio.sleep(0)
        return VERIFIED

    metrics = Metrics()
    checker = ProvenanceChecker(RefStore(tmp_path, "provenance"), metrics)
    results = await asyncio.gather(*(
        checker.check(Ecosystem.NPM, K.ATTESTATION, "sha512", "ab" * 64, inputs="i1",
                      compute=compute) for _ in range(5)))
    assert results == [VERIFIED] * 5
    assert len(calls) == 1
    assert counted(metrics, "verified") == 5

    restarted = ProvenanceChecker(RefStore(tmp_path, "provenance"), Metrics())
    again = await restarted.check(Ecosystem.NPM, K.ATTESTATION, "sha512", "AB" * 64,
                                  inputs="i1", compute=compute)
    assert again == VERIFIED and len(calls) == 1
    assert restarted.known(K.ATTESTATION, "sha512", "ab" * 64) == VERIFIED
    # other trust material or signatures: verified again
    await restarted.check(Ecosystem.NPM, K.ATTESTATION, "sha512", "ab" * 64, inputs="i2",
                          compute=compute)
    assert len(calls) == 2


async def test_timeouts_and_fetch_failures_are_unverifiable_and_not_kept(
        tmp_path: Path) -> None:
    checker = ProvenanceChecker(RefStore(tmp_path, "provenance"), timeout_s=0.05)
    never = asyncio.Event()

    async def hang() -> ProvenanceResult:
        await never.wait()
        return VERIFIED

    async def down() -> ProvenanceResult:
        raise TransientError("upstream npmjs did not answer")

    slow = await checker.check(Ecosystem.NPM, K.ATTESTATION, "sha512", "cd" * 64,
                               inputs="i", compute=hang)
    assert slow.result is S.UNVERIFIABLE and "longer than" in slow.detail
    failed = await checker.check(Ecosystem.NPM, K.ATTESTATION, "sha512", "cd" * 64,
                                 inputs="i", compute=down)
    assert failed.result is S.UNVERIFIABLE and "did not answer" in failed.detail
    assert checker.known(K.ATTESTATION, "sha512", "cd" * 64) is None
    assert checker.verifications == 2


def test_records_round_trip() -> None:
    assert from_record(to_record(VERIFIED)) == VERIFIED
    bare = ProvenanceResult(K.SIGNATURE, S.MISSING, None, "no npm registry signature")
    assert from_record(to_record(bare)) == bare
    assert from_record({"kind": "nonsense"}) is None


def test_engine_exposes_the_policy_rule() -> None:
    policy = parse_policy("rules: {provenance: {attestations: require}}\n",
                          base_dir=Path("."), source="t")
    rule = provenance_rule(build_engine(policy))
    assert rule is not None and rule.attestations == "require"
    assert provenance_rule(build_engine(parse_policy("", base_dir=Path("."),
                                                     source="t"))) is None


async def test_a_waiter_going_away_does_not_cancel_the_verification(tmp_path: Path) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def compute() -> ProvenanceResult:
        started.set()
        await release.wait()
        return VERIFIED

    checker = ProvenanceChecker(RefStore(tmp_path, "provenance"))
    first = asyncio.create_task(checker.check(
        Ecosystem.NPM, K.ATTESTATION, "sha512", "ef" * 64, inputs="i", compute=compute))
    second = asyncio.create_task(checker.check(
        Ecosystem.NPM, K.ATTESTATION, "sha512", "ef" * 64, inputs="i", compute=compute))
    await started.wait()
    first.cancel()
    release.set()
    assert await second == VERIFIED
    assert checker.verifications == 1
    await checker.close()
