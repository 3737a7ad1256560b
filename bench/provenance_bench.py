"""Provenance benchmark: what verifying costs per artifact, against baselines in the run.

Prints, per kind of check, the median and p90 time of one cold verification (nothing
cached: each call parses and verifies from the bytes, as the first request for an
artifact digest does; the sigstore verifier and keyrings are built once, as a server
builds them at start), beside two baselines measured in alternating passes:

  - no-op: a call of the same shape that returns a fixed result (the harness);
  - sha256: hashing a 1 MiB artifact, which every cold fetch pays anyway;

and the ratio of each check to the sha256 baseline. Then the warm side: a decision
by the engine with the provenance rule over a cached result, against the same
decision with provenance off (the rule absent), and their ratio: what a warm
request pays for provenance once its result is stored with the blob's record.

Kinds: npm registry signature; npm attestations (SLSA provenance through sigstore
plus the registry's publish attestation); npm legacy 2023 bundle (refused at load:
unverifiable); PyPI PEP 740 provenance; a Maven .asc over 1 MiB with a key made here.

    python -m bench.provenance_bench [--fixtures DIR] [--rounds N] [--calls N]

``--fixtures`` defaults to ``../shared/fixtures`` beside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pysequoia

from stockade.policy.engine import Engine
from stockade.policy.model import (
    BuildIdentity,
    Ecosystem,
    Facts,
    PackageRef,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
)
from stockade.policy.rules.provenance import IdentityEntry, ProvenanceRule
from stockade.policy.rules.republished import RepublishedRule
from stockade.proxy.provenance.attestations import (
    SigstoreTrust,
    verify_npm_attestations,
    verify_pypi_provenance,
)
from stockade.proxy.provenance.npm_signatures import parse_keys, verify_signatures
from stockade.proxy.provenance.pgp import load_keyring, verify_detached

ROOT = Path(__file__).resolve().parents[1]
PLAYWRIGHT = ("sha512-9k11ZfDwAfMVDDIuEVW1Wvs8SoDNXIY1dNQ+9C9/SS8ZmElkcxesu5eoL7vNa96ntibUGaq1TM2q"
              "Qoqvdl/I9g==")
SAMPLE_SHA256 = "0ace7980f82c5815ede4cd7bf9f6693684cec2ae47b9b7ade9add533b8627c6b"
ARTIFACT = os.urandom(1024 * 1024)


def _checks(fixtures: Path) -> dict[str, Callable[[], Any]]:
    """Each check as a call with its inputs bound (read and parsed once, here)."""
    keys = parse_keys((fixtures / "npm/registry-keys.json").read_bytes())
    trust = SigstoreTrust.from_json(
        (fixtures / "sigstore/trusted_root.production.json").read_bytes())
    case = json.loads((fixtures / "npm/dist-signatures.json").read_text())["cases"][0]
    playwright = (fixtures / "npm/attestations/playwright-cli-0.1.1.json").read_bytes()
    legacy = (fixtures / "npm/attestations/sigstore-1.0.0.json").read_bytes()
    sample = (fixtures / "pypi/provenance/sampleproject-4.0.0.tar.gz.provenance.json"
              ).read_bytes()
    key = pysequoia.Tsk.generate("Bench <bench@example.org>")
    keyring = load_keyring([str(key.extract_certificate()).encode()])
    asc = pysequoia.sign(key.signer(), ARTIFACT, mode=pysequoia.SignatureMode.DETACHED)
    return {
        "npm signature": lambda: verify_signatures(
            name=case["name"], version=case["version"], integrity=case["integrity"],
            signatures=case["signatures"], keys=keys, published_at=None),
        "npm attestations": lambda: verify_npm_attestations(
            playwright, name="@playwright/cli", version="0.1.1", integrity=PLAYWRIGHT,
            trust=trust, keys=keys),
        "npm legacy bundle": lambda: verify_npm_attestations(
            legacy, name="sigstore", version="1.0.0", integrity=case["integrity"],
            trust=trust, keys=keys),
        "PyPI PEP 740": lambda: verify_pypi_provenance(
            sample, filename="sampleproject-4.0.0.tar.gz", sha256=SAMPLE_SHA256, trust=trust),
        "Maven .asc (1 MiB)": lambda: verify_detached(ARTIFACT, asc, keyring),
    }


_NOOP = ProvenanceResult(ProvenanceKind.SIGNATURE, ProvenanceStatus.VERIFIED)


def _noop() -> ProvenanceResult:
    return _NOOP


def _sha256() -> str:
    return hashlib.sha256(ARTIFACT).hexdigest()


def _times(call: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9) - 1]


def cold(fixtures: Path, rounds: int, calls: int) -> None:
    checks = _checks(fixtures)
    for check in checks.values():  # a first call outside the figures: imports, caches
        check()
    named: dict[str, Callable[[], Any]] = {"no-op": _noop, "sha256 of 1 MiB": _sha256,
                                           **checks}
    samples: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):  # alternate so the machine's drift hits every line alike
        for name, call in named.items():
            samples[name] += _times(call, calls)
    base, _ = _summary(samples["sha256 of 1 MiB"])
    print(f"cold verification, {rounds} rounds x {calls} calls, median / p90 per artifact:")
    for name, times in samples.items():
        median, p90 = _summary(times)
        print(f"  {name:22} {median * 1e6:9.1f} us {p90 * 1e6:9.1f} us"
              f"   x{median / base:7.2f} of sha256")
    build = _times(lambda: SigstoreTrust.from_json(
        (fixtures / "sigstore/trusted_root.production.json").read_bytes()), 20)
    print(f"  (once per process: a verifier on a trusted root, {statistics.median(build) * 1e3:.2f}"
          " ms)")


def warm(rounds: int, calls: int) -> None:
    """A decision over a stored result, with the provenance rule and without it."""
    identity = BuildIdentity(Publisher.GITHUB, "https://github.com/microsoft/playwright-cli")
    facts = Facts(provenance=(
        ProvenanceResult(ProvenanceKind.SIGNATURE, ProvenanceStatus.VERIFIED),
        ProvenanceResult(ProvenanceKind.ATTESTATION, ProvenanceStatus.VERIFIED, identity)))
    rule = ProvenanceRule(identities=(IdentityEntry(Ecosystem.NPM, "@playwright/*",
                                                    "microsoft/playwright-cli"),))
    with_rule = Engine([rule, RepublishedRule()], revision="on")
    without = Engine([RepublishedRule()], revision="off")
    ref = PackageRef(Ecosystem.NPM, "@playwright/cli", "0.1.1")
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        on += _times(lambda: with_rule.decide(ref, facts), calls * 20)
        off += _times(lambda: without.decide(ref, facts), calls * 20)
    m_on, _ = _summary(on)
    m_off, _ = _summary(off)
    print("warm decision over a stored result, median per request:")
    print(f"  provenance off         {m_off * 1e6:9.2f} us")
    print(f"  provenance on          {m_on * 1e6:9.2f} us   x{m_on / m_off:.2f} of off "
          f"(+{(m_on - m_off) * 1e6:.2f} us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    if not (args.fixtures / "npm" / "registry-keys.json").is_file():
        parser.error(f"no shared fixtures under {args.fixtures} (give --fixtures DIR)")
    cold(args.fixtures, args.rounds, args.calls)
    warm(args.rounds, args.calls)


if __name__ == "__main__":
    main()
