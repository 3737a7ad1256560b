"""PEP 740 provenance with a pinned trusted root, on the real fixtures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stockade.policy.model import ProvenanceKind, ProvenanceStatus, Publisher
from stockade.proxy.provenance.attestations import (
    SigstoreTrust,
    verify_pypi_attestation,
    verify_pypi_provenance,
)
from tests.unit.proxy.provenance.shared import fixture, flip

S = ProvenanceStatus
SAMPLE = "sampleproject-4.0.0.tar.gz"
SAMPLE_SHA256 = "0ace7980f82c5815ede4cd7bf9f6693684cec2ae47b9b7ade9add533b8627c6b"
PA = "pypi_attestations-0.0.19.tar.gz"
PA_SHA256 = "9bb1add04b1b4e182be6b0b80931593f7a291eb49d69b4fd728a5d4cbcdc4bd3"
RFC = "rfc8785-0.1.2-py3-none-any.whl"
RFC_SHA256 = "c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201"


@pytest.fixture(scope="module")
def trust() -> SigstoreTrust:
    return SigstoreTrust.from_json(fixture("sigstore/trusted_root.production.json").read_bytes())


@pytest.fixture(scope="module")
def staging() -> SigstoreTrust:
    return SigstoreTrust.from_json(fixture("sigstore/trusted_root.staging.json").read_bytes())


def sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        fixture(f"pypi/provenance/{SAMPLE}.provenance.json").read_text())
    return loaded


def check(trust: SigstoreTrust, document: dict[str, Any] | None = None, *,
          filename: str = SAMPLE, sha256: str = SAMPLE_SHA256) -> Any:
    body = json.dumps(sample() if document is None else document).encode()
    return verify_pypi_provenance(body, filename=filename, sha256=sha256, trust=trust)


@pytest.mark.parametrize(("name", "filename", "sha256", "repository"), [
    (SAMPLE, SAMPLE, SAMPLE_SHA256, "https://github.com/pypa/sampleproject"),
    (PA, PA, PA_SHA256, "https://github.com/trailofbits/pypi-attestations"),
])
def test_real_provenance_verifies_with_the_trusted_publisher(
        name: str, filename: str, sha256: str, repository: str, trust: SigstoreTrust) -> None:
    body = fixture(f"pypi/provenance/{name}.provenance.json").read_bytes()
    result = verify_pypi_provenance(body, filename=filename, sha256=sha256, trust=trust)
    assert result.kind is ProvenanceKind.ATTESTATION
    assert result.result is S.VERIFIED, result.detail
    assert result.identity is not None
    assert result.identity.publisher is Publisher.GITHUB
    assert result.identity.repository == repository
    assert result.identity.workflow == ".github/workflows/release.yml"


def test_the_digest_may_be_upper_case(trust: SigstoreTrust) -> None:
    assert check(trust, sha256=SAMPLE_SHA256.upper()).result is S.VERIFIED


@pytest.mark.parametrize("kind", ["publish", "slsa"])
def test_single_attestation_objects_verify(kind: str, trust: SigstoreTrust) -> None:
    body = fixture(f"pypi/provenance/{PA}.{kind}.attestation.json").read_bytes()
    result = verify_pypi_attestation(body, filename=PA, sha256=PA_SHA256, trust=trust)
    assert result.result is S.VERIFIED, result.detail


def test_another_file_digest_is_a_mismatch(trust: SigstoreTrust) -> None:
    result = check(trust, sha256=PA_SHA256)
    assert result.result is S.MISMATCH
    assert "0ace7980f82c" in result.detail and "9bb1add04b1b" in result.detail


def test_another_file_name_is_a_mismatch(trust: SigstoreTrust) -> None:
    result = check(trust, filename="sampleproject-4.0.0-py3-none-any.whl")
    assert result.result is S.MISMATCH
    assert SAMPLE in result.detail


def test_flipped_byte_in_signature_is_invalid(trust: SigstoreTrust) -> None:
    document = sample()
    envelope = document["attestation_bundles"][0]["attestations"][0]["envelope"]
    envelope["signature"] = flip(envelope["signature"], 20)
    assert check(trust, document).result is S.INVALID


def test_publisher_pypi_names_must_be_the_certificates(trust: SigstoreTrust) -> None:
    document = sample()
    document["attestation_bundles"][0]["publisher"]["repository"] = "evil/sampleproject"
    result = check(trust, document)
    assert result.result is S.MISMATCH
    assert "evil/sampleproject" in result.detail


def test_staging_signed_attestation_fails_under_the_production_root(
        trust: SigstoreTrust, staging: SigstoreTrust) -> None:
    body = fixture(f"pypi/provenance/{RFC}.publish.attestation.staging.json").read_bytes()
    refused = verify_pypi_attestation(body, filename=RFC, sha256=RFC_SHA256, trust=trust)
    assert refused.result is S.INVALID
    assert "trusted root" in refused.detail
    # the same bytes verify under the root they were made for: the failure is the root
    accepted = verify_pypi_attestation(body, filename=RFC, sha256=RFC_SHA256, trust=staging)
    assert accepted.result is S.VERIFIED


@pytest.mark.parametrize(("document", "status"), [
    ({"version": 1, "attestation_bundles": []}, S.MISSING),
    ({"version": 1}, S.UNVERIFIABLE),
    ({"message": "No provenance available for x"}, S.UNVERIFIABLE),
])
def test_empty_and_malformed_objects(document: dict[str, Any], status: ProvenanceStatus,
                                     trust: SigstoreTrust) -> None:
    assert check(trust, document).result is status


def test_attestation_with_an_unreadable_certificate_is_unverifiable(
        trust: SigstoreTrust) -> None:
    document = sample()
    material = document["attestation_bundles"][0]["attestations"][0]["verification_material"]
    material["certificate"] = "bm90IGEgY2VydGlmaWNhdGU="
    assert check(trust, document).result is S.UNVERIFIABLE
