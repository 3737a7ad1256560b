"""npm registry signatures and provenance attestations, on the real fixtures."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stockade.policy.model import ProvenanceKind, ProvenanceStatus, Publisher
from stockade.proxy.provenance.attestations import (
    SigstoreTrust,
    SigstoreTrustError,
    npm_purl,
    sha512_hex,
    verify_npm_attestations,
)
from stockade.proxy.provenance.npm_signatures import (
    NpmKeys,
    NpmKeysError,
    parse_keys,
    verify_signatures,
)
from tests.unit.proxy.provenance.shared import fixture, flip

S = ProvenanceStatus
OLD_KEY = "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA"  # expired 2025-01-29
NEW_KEY = "SHA256:DhQ8wR5APBvFHLF/+Tc+AYvPOdTpcIDqOhxsBHRwC7U"
PLAYWRIGHT = ("sha512-9k11ZfDwAfMVDDIuEVW1Wvs8SoDNXIY1dNQ+9C9/SS8ZmElkcxesu5eoL7vNa96ntibUGaq1TM2q"
              "Qoqvdl/I9g==")
# sigstore@1.0.0 and tuf-js@1.0.0 were published in early 2023, while OLD_KEY was valid
PUBLISHED_2023 = datetime(2023, 2, 1, tzinfo=UTC)


def keys_json() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture("npm/registry-keys.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def keys() -> NpmKeys:
    return parse_keys(fixture("npm/registry-keys.json").read_bytes())


@pytest.fixture(scope="module")
def trust() -> SigstoreTrust:
    return SigstoreTrust.from_json(fixture("sigstore/trusted_root.production.json").read_bytes())


def cases() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(
        fixture("npm/dist-signatures.json").read_text())["cases"]
    return loaded


def playwright() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        fixture("npm/attestations/playwright-cli-0.1.1.json").read_text())
    return loaded


def bundle_of(document: dict[str, Any], predicate: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a["bundle"] for a in document["attestations"]
                                 if predicate in a["predicateType"])
    return found


class TestKeys:
    def test_real_keys_document_parses_with_expiry(self, keys: NpmKeys) -> None:
        old, new = keys.get(OLD_KEY), keys.get(NEW_KEY)
        assert old is not None and old.expires == datetime(2025, 1, 29, tzinfo=UTC)
        assert new is not None and new.expires is None

    def test_sigstore_tuf_shape_is_read_too(self) -> None:
        entry = keys_json()["keys"][1]
        tuf = {"keys": [{"keyId": entry["keyid"], "keyUsage": "npm:signatures",
                         "publicKey": {"rawBytes": entry["key"],
                                       "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                       "validFor": {"start": "1999-01-01T00:00:00.000Z"}}}]}
        parsed = parse_keys(json.dumps(tuf).encode())
        assert parsed.get(NEW_KEY) is not None

    @pytest.mark.parametrize(("change", "message"), [
        (lambda d: d["keys"][0].update(keyid=NEW_KEY), "does not match its key material"),
        (lambda d: d["keys"][0].update(key="bm90IGEga2V5"), "cannot be read"),
        (lambda d: d.pop("keys"), "no \"keys\" list"),
        (lambda d: d["keys"][0].pop("key"), "has no keyid or key"),
    ])
    def test_bad_documents_are_refused_with_a_sentence(self, change: Any, message: str) -> None:
        document = keys_json()
        change(document)
        with pytest.raises(NpmKeysError, match=message):
            parse_keys(json.dumps(document).encode())

    def test_not_json(self) -> None:
        with pytest.raises(NpmKeysError, match="not JSON"):
            parse_keys(b"<html>")


class TestSignatures:
    @pytest.mark.parametrize("case", cases(), ids=lambda c: c["name"])
    @pytest.mark.parametrize("published", [PUBLISHED_2023, None])
    def test_real_signatures_verify(self, case: dict[str, Any], published: datetime | None,
                                    keys: NpmKeys) -> None:
        result = verify_signatures(name=case["name"], version=case["version"],
                                   integrity=case["integrity"], signatures=case["signatures"],
                                   keys=keys, published_at=published)
        assert result.kind is ProvenanceKind.SIGNATURE
        assert result.result is S.VERIFIED, result.detail

    def check(self, keys: NpmKeys, *, case: int = 0, published: datetime | None = PUBLISHED_2023,
              **change: Any) -> tuple[ProvenanceStatus, str]:
        c = {**cases()[case], **change}
        result = verify_signatures(name=c["name"], version=c["version"],
                                   integrity=c["integrity"], signatures=c["signatures"],
                                   keys=keys, published_at=published)
        return result.result, result.detail

    def test_flipped_byte_in_signature_is_invalid(self, keys: NpmKeys) -> None:
        sig = cases()[0]["signatures"][0]
        status, detail = self.check(keys, signatures=[{**sig, "sig": flip(sig["sig"], 20)}])
        assert status is S.INVALID
        assert "does not verify" in detail

    def test_other_integrity_is_invalid(self, keys: NpmKeys) -> None:
        status, _ = self.check(keys, integrity=cases()[1]["integrity"])
        assert status is S.INVALID

    def test_other_version_is_invalid(self, keys: NpmKeys) -> None:
        status, _ = self.check(keys, version="1.0.1")
        assert status is S.INVALID

    def test_unknown_key_id_is_unverifiable(self) -> None:
        only_new = parse_keys({"keys": [keys_json()["keys"][1]]})
        status, detail = self.check(only_new)
        assert status is S.UNVERIFIABLE
        assert OLD_KEY in detail

    def test_key_expired_before_publication_is_invalid(self, keys: NpmKeys) -> None:
        status, detail = self.check(keys, published=datetime(2025, 6, 1, tzinfo=UTC))
        assert status is S.INVALID
        assert "expired 2025-01-29" in detail

    def test_expiry_is_strict_as_npm(self, keys: NpmKeys) -> None:
        status, _ = self.check(keys, published=datetime(2025, 1, 29, tzinfo=UTC))
        assert status is S.INVALID

    @pytest.mark.parametrize("signatures", [None, []])
    def test_missing(self, signatures: Any, keys: NpmKeys) -> None:
        status, _ = self.check(keys, signatures=signatures)
        assert status is S.MISSING


class TestAttestations:
    def verify(self, trust: SigstoreTrust, keys: NpmKeys, document: Any = None, *,
               name: str = "@playwright/cli", version: str = "0.1.1",
               integrity: str = PLAYWRIGHT) -> Any:
        body = json.dumps(playwright() if document is None else document).encode()
        return verify_npm_attestations(body, name=name, version=version, integrity=integrity,
                                       trust=trust, keys=keys)

    def test_modern_provenance_verifies_with_identity(self, trust: SigstoreTrust,
                                                      keys: NpmKeys) -> None:
        result = self.verify(trust, keys)
        assert result.kind is ProvenanceKind.ATTESTATION
        assert result.result is S.VERIFIED, result.detail
        assert result.identity is not None
        assert result.identity.publisher is Publisher.GITHUB
        assert result.identity.repository == "https://github.com/microsoft/playwright-cli"
        assert result.identity.workflow == ".github/workflows/publish.yml"
        assert result.identity.ref == "refs/tags/v0.1.1"

    def test_the_production_root_shipped_with_sigstore_is_the_default(self,
                                                                       keys: NpmKeys) -> None:
        result = self.verify(SigstoreTrust.production(), keys)
        assert result.result is S.VERIFIED

    def test_another_digest_is_a_mismatch(self, trust: SigstoreTrust, keys: NpmKeys) -> None:
        result = self.verify(trust, keys, integrity=cases()[0]["integrity"])
        assert result.result is S.MISMATCH
        assert "f64d7565f0f0" in result.detail and "7bea9f6e7ff3" in result.detail
        assert "f64d7565f0f0f001" not in result.detail  # digests cut to 12 hex

    def test_another_package_is_a_mismatch(self, trust: SigstoreTrust, keys: NpmKeys) -> None:
        result = self.verify(trust, keys, name="@playwright/cli-evil")
        assert result.result is S.MISMATCH
        assert "pkg:npm/%40playwright/cli@0.1.1" in result.detail

    def test_another_version_is_a_mismatch(self, trust: SigstoreTrust, keys: NpmKeys) -> None:
        assert self.verify(trust, keys, version="0.1.2").result is S.MISMATCH

    def test_flipped_byte_in_provenance_signature_is_invalid(self, trust: SigstoreTrust,
                                                            keys: NpmKeys) -> None:
        document = playwright()
        signature = bundle_of(document, "slsa")["dsseEnvelope"]["signatures"][0]
        signature["sig"] = flip(signature["sig"], 30)
        result = self.verify(trust, keys, document)
        assert result.result is S.INVALID
        assert result.detail.startswith("provenance:")

    def test_flipped_byte_in_publish_attestation_is_invalid(self, trust: SigstoreTrust,
                                                           keys: NpmKeys) -> None:
        document = playwright()
        signature = bundle_of(document, "publish")["dsseEnvelope"]["signatures"][0]
        signature["sig"] = flip(signature["sig"], 30)
        result = self.verify(trust, keys, document)
        assert result.result is S.INVALID
        assert result.detail.startswith("publish attestation:")

    def test_under_the_staging_root_nothing_verifies(self, keys: NpmKeys) -> None:
        staging = SigstoreTrust.from_json(
            fixture("sigstore/trusted_root.staging.json").read_bytes())
        result = self.verify(staging, keys)
        assert result.result is S.INVALID
        assert "trusted root" in result.detail

    def test_publish_attestation_with_unknown_key_is_unverifiable(self,
                                                                   trust: SigstoreTrust) -> None:
        only_old = parse_keys({"keys": [keys_json()["keys"][0]]})
        result = self.verify(trust, only_old)
        assert result.result is S.UNVERIFIABLE
        assert NEW_KEY in result.detail

    def test_publish_attestation_after_key_expiry_is_invalid(self,
                                                              trust: SigstoreTrust) -> None:
        document = keys_json()
        document["keys"][1]["expires"] = "2020-01-01T00:00:00.000Z"
        result = self.verify(trust, parse_keys(document))
        assert result.result is S.INVALID
        assert "expired" in result.detail

    def test_legacy_2023_bundle_is_unverifiable_not_tampered(self, trust: SigstoreTrust,
                                                            keys: NpmKeys) -> None:
        legacy = json.loads(fixture("npm/attestations/sigstore-1.0.0.json").read_text())
        result = self.verify(trust, keys, legacy, name="sigstore", version="1.0.0",
                             integrity=cases()[0]["integrity"])
        assert result.result is S.UNVERIFIABLE
        assert result.identity is None
        # the registry's own publish attestation over the same subject still verifies
        assert "publish attestation" not in result.detail

    def test_only_a_publish_attestation_is_missing_provenance(self, trust: SigstoreTrust,
                                                              keys: NpmKeys) -> None:
        document = playwright()
        document["attestations"] = [a for a in document["attestations"]
                                    if "publish" in a["predicateType"]]
        result = self.verify(trust, keys, document)
        assert result.result is S.MISSING

    @pytest.mark.parametrize(("document", "status"), [
        ({"attestations": []}, S.MISSING),
        ({"attestations": [{"predicateType": "x"}]}, S.UNVERIFIABLE),
        ({"error": "not found"}, S.UNVERIFIABLE),
    ])
    def test_empty_and_malformed_documents(self, document: Any, status: ProvenanceStatus,
                                           trust: SigstoreTrust, keys: NpmKeys) -> None:
        assert self.verify(trust, keys, document).result is status

    def test_not_json_is_unverifiable(self, trust: SigstoreTrust, keys: NpmKeys) -> None:
        result = verify_npm_attestations(b"<html>", name="x", version="1", integrity=PLAYWRIGHT,
                                         trust=trust, keys=keys)
        assert result.result is S.UNVERIFIABLE

    def test_provenance_bundle_that_fails_to_load_is_unverifiable(
            self, trust: SigstoreTrust, keys: NpmKeys) -> None:
        document = copy.deepcopy(playwright())
        bundle_of(document, "slsa")["verificationMaterial"]["tlogEntries"][0][
            "inclusionProof"] = None
        assert self.verify(trust, keys, document).result is S.UNVERIFIABLE


def test_purl_and_digest_helpers() -> None:
    assert npm_purl("@playwright/cli", "0.1.1") == "pkg:npm/%40playwright/cli@0.1.1"
    assert npm_purl("sigstore", "1.0.0") == "pkg:npm/sigstore@1.0.0"
    assert sha512_hex(PLAYWRIGHT) is not None
    assert sha512_hex(PLAYWRIGHT).startswith("f64d7565f0f0")  # type: ignore[union-attr]
    assert sha512_hex("sha1-abc") is None


def test_a_file_that_is_no_trusted_root_is_refused_with_a_sentence() -> None:
    with pytest.raises(SigstoreTrustError, match=r"keys\.json is not a sigstore trusted root"):
        SigstoreTrust.from_json(fixture("npm/registry-keys.json").read_bytes(),
                                source="keys.json")
