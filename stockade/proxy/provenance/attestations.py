"""Sigstore attestations: npm provenance and PyPI PEP 740, against a pinned trusted root.

Owns turning an npm attestations document (``dist.attestations.url``) or a PyPI
provenance object (the Integrity API's body) into one ``ProvenanceResult`` per
artifact: every signature verified under the pinned root, the statement's subject
equal to the artifact (npm: package URL and tarball sha512; PyPI: file name and
sha256), and the builder's identity read from the signing certificate. Synchronous
and free of I/O, except ``SigstoreTrust.production()``, which reads the root shipped
inside sigstore's own package once.

Never network: ``Verifier.production()`` and ``pypi_attestations``' ``verify()``
refresh TUF or write to a user cache, so neither is called; the root is passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import ValidationError

if TYPE_CHECKING:
    from pypi_attestations import Attestation
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

from stockade.policy.model import (
    BuildIdentity,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
)
from stockade.policy.rules.provenance import normalize_repository
from stockade.proxy.provenance.identity import KnownIssuer, identity_of
from stockade.proxy.provenance.npm_signatures import NpmKeys, ecdsa_valid

S = ProvenanceStatus
IN_TOTO = "application/vnd.in-toto+json"
NPM_PUBLISH = "https://github.com/npm/attestation/tree/main/specs/publish/"
# worst first when several parts of one artifact's provenance disagree
_RANK = {S.INVALID: 4, S.MISMATCH: 3, S.UNVERIFIABLE: 2, S.MISSING: 1, S.VERIFIED: 0}
_PRODUCTION_TUF = "https://tuf-repo-cdn.sigstore.dev"


class SigstoreTrustError(ValueError):
    """A trusted root cannot be used; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class SigstoreTrust:
    """A sigstore verifier bound to one trusted root (built once, shared by threads)."""

    verifier: Verifier
    source: str

    @classmethod
    def production(cls) -> SigstoreTrust:
        """The production root shipped inside the installed sigstore package.

        Raises:
            SigstoreTrustError: the package holds no readable root.
        """
        try:
            data = (resources.files("sigstore._store") / quote(_PRODUCTION_TUF, safe="")
                    / "trusted_root.json").read_bytes()
        except OSError as exc:
            raise SigstoreTrustError(f"sigstore ships no production trusted root: {exc}") \
                from exc
        return cls.from_json(data, source="the production root shipped with sigstore")

    @classmethod
    def from_json(cls, data: bytes, *, source: str = "trusted_root.json") -> SigstoreTrust:
        """A verifier for the trusted root ``data`` (a sigstore ``trusted_root.json``).

        Raises:
            SigstoreTrustError: not a trusted root sigstore can use.
        """
        # imported where first needed: sigstore's models, pypi_attestations and what
        # they load take about a second, which every start paid for a check that most
        # policies never ask for
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import TrustedRoot
        from sigstore.verify import Verifier
        from sigstore_models.trustroot import v1 as trustroot_v1

        try:
            root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(data))
        except (ValueError, SigstoreError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SigstoreTrustError(f"{source} is not a sigstore trusted root: {first}") \
                from exc
        return cls(Verifier(trusted_root=root), source)


@dataclass(frozen=True, slots=True)
class _Part:
    label: str
    status: ProvenanceStatus
    detail: str
    identity: BuildIdentity | None = None


def _combine(parts: Sequence[_Part]) -> ProvenanceResult:
    worst = max(parts, key=lambda p: _RANK[p.status])
    shown = parts if worst.status is S.VERIFIED else [p for p in parts if p.status is not
                                                      S.VERIFIED]
    detail = "; ".join(f"{p.label}: {p.detail}" for p in shown)
    identity = next((p.identity for p in parts if p.identity is not None), None)
    return ProvenanceResult(ProvenanceKind.ATTESTATION, worst.status, identity, detail)


def _failure(exc: Exception) -> _Part:
    """A sigstore error as a part: a failed check is invalid, anything else unverifiable."""
    from sigstore.errors import VerificationError
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, VerificationError) and not text.startswith("Unsupported"):
        return _Part("signature", S.INVALID, f"does not verify under the trusted root ({text})")
    return _Part("signature", S.UNVERIFIABLE, f"cannot be checked by this verifier ({text})")


def _statement(payload_type: str, payload: bytes) -> dict[str, Any] | None:
    if payload_type != IN_TOTO:
        return None
    try:
        statement: Any = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(statement, dict):
        return None
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects or not isinstance(subjects[0], dict):
        return None
    return statement


def _subject_problem(statement: dict[str, Any], name: str, algorithm: str,
                     digest: str) -> str | None:
    """Why the statement is not about (name, digest); None when it is."""
    subject = statement["subject"][0]
    digests = subject.get("digest") if isinstance(subject.get("digest"), dict) else {}
    if subject.get("name") != name:
        return f"it is for {str(subject.get('name'))[:80]}, not {name}"
    found = str(digests.get(algorithm, "")).lower()
    if found != digest:
        return f"it covers {algorithm} {found[:12] or '(none)'}, the artifact is {digest[:12]}"
    return None


def _verify_dsse(bundle: Bundle, trust: SigstoreTrust, name: str, algorithm: str,
                 digest: str, label: str) -> _Part:
    from sigstore.errors import Error as SigstoreError
    try:
        payload_type, payload = trust.verifier.verify_dsse(bundle, KnownIssuer())
    except (SigstoreError, ValueError) as exc:
        failed = _failure(exc)
        return _Part(label, failed.status, failed.detail)
    identity = identity_of(bundle.signing_certificate)
    statement = _statement(payload_type, payload)
    if statement is None:
        return _Part(label, S.UNVERIFIABLE, f"the signed payload is not an in-toto statement "
                     f"({payload_type})", identity)
    problem = _subject_problem(statement, name, algorithm, digest)
    if problem is not None:
        return _Part(label, S.MISMATCH, problem, identity)
    problem = _predicate_problem(statement, identity)
    if problem is not None:
        return _Part(label, S.MISMATCH, problem, identity)
    return _Part(label, S.VERIFIED, f"built from {identity.repository or identity.signer}",
                 identity)


def _predicate_problem(statement: dict[str, Any], identity: BuildIdentity) -> str | None:
    """SLSA v1 names the repository too: it must be the certificate's."""
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict) or identity.repository is None:
        return None
    workflow = (((predicate.get("buildDefinition") or {}).get("externalParameters") or {})
                .get("workflow") or {})
    named = workflow.get("repository") if isinstance(workflow, dict) else None
    if not isinstance(named, str) or \
            normalize_repository(named) == normalize_repository(identity.repository):
        return None
    return f"its predicate names {named[:80]}, its certificate {identity.repository}"


# -- npm -----------------------------------------------------------------------------

def npm_purl(name: str, version: str) -> str:
    """The package URL npm's statements name: ``pkg:npm/%40scope/name@1.2.3``."""
    return f"pkg:npm/{quote(name, safe='/~')}@{version}"


def sha512_hex(integrity: str | None) -> str | None:
    """The hex sha512 of an SRI integrity string (npm's ``dist.integrity``)."""
    for token in (integrity or "").split():
        algorithm, _, value = token.partition("-")
        if algorithm == "sha512":
            try:
                return base64.b64decode(value.split("?")[0], validate=True).hex()
            except (binascii.Error, ValueError):
                return None
    return None


def verify_npm_attestations(
    document: bytes | Mapping[str, Any], *, name: str, version: str, integrity: str | None,
    trust: SigstoreTrust, keys: NpmKeys,
) -> ProvenanceResult:
    """Check the attestations document of one npm version (``dist.attestations.url``).

    The SLSA provenance bundle is verified with sigstore under ``trust``; the
    registry's publish attestation by hand (DSSE over ECDSA with the key ``keys``
    name). Both must be about ``pkg:npm/<name>@<version>`` with the tarball's sha512.
    Bundles sigstore cannot load (npm 9's 2023 format) are ``unverifiable``.
    """
    entries = _npm_entries(document)
    if entries is None:
        return _combine([_Part("attestations", S.UNVERIFIABLE,
                               "the document is not an npm attestations document")])
    if not entries:
        return _combine([_Part("attestations", S.MISSING, "the document lists none")])
    purl, digest = npm_purl(name, version), sha512_hex(integrity)
    if digest is None:
        return _combine([_Part("attestations", S.UNVERIFIABLE,
                               "no sha512 integrity to compare the subject with")])
    parts: list[_Part] = []
    for predicate_type, bundle in entries:
        if predicate_type.startswith(NPM_PUBLISH) or "publicKey" in (
                bundle.get("verificationMaterial") or {}):
            parts.append(_npm_publish(bundle, purl, digest, name, version, keys))
        else:
            parts.append(_npm_provenance(bundle, purl, digest, trust))
    if not any(p.label == "provenance" for p in parts):
        parts.append(_Part("provenance", S.MISSING, "only the registry's publish attestation"))
    return _combine(parts)


def _npm_entries(document: bytes | Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]] | None:
    if isinstance(document, bytes | bytearray):
        try:
            document = json.loads(document)
        except ValueError:
            return None
    listed = document.get("attestations") if isinstance(document, Mapping) else None
    if not isinstance(listed, list):
        return None
    out = []
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("bundle"), dict):
            return None
        out.append((str(entry.get("predicateType", "")), entry["bundle"]))
    return out


def _npm_provenance(bundle: dict[str, Any], purl: str, digest: str,
                    trust: SigstoreTrust) -> _Part:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle

    try:
        loaded = Bundle.from_json(json.dumps(bundle))
    except (SigstoreError, ValueError) as exc:
        failed = _failure(exc)
        return _Part("provenance", S.UNVERIFIABLE, failed.detail)
    return _verify_dsse(loaded, trust, purl, "sha512", digest, "provenance")


def _npm_publish(bundle: dict[str, Any], purl: str, digest: str, name: str, version: str,
                 keys: NpmKeys) -> _Part:
    label = "publish attestation"
    try:
        envelope = bundle["dsseEnvelope"]
        signature = envelope["signatures"][0]
        payload = base64.b64decode(envelope["payload"], validate=True)
        payload_type = str(envelope["payloadType"])
        keyid = signature.get("keyid") or bundle["verificationMaterial"]["publicKey"]["hint"]
        logged = int(bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"])
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return _Part(label, S.UNVERIFIABLE, "not in a shape this verifier reads")
    key = keys.get(str(keyid))
    if key is None:
        return _Part(label, S.UNVERIFIABLE,
                     f"signed with key {keyid}, which the registry's keys do not list")
    if not key.valid_at(datetime.fromtimestamp(logged, UTC)):
        return _Part(label, S.INVALID, f"signed with key {keyid} after it expired")
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type.encode()), payload_type.encode(),
                                   len(payload), payload)
    if not ecdsa_valid(key.key, pae, str(signature.get("sig", ""))):
        return _Part(label, S.INVALID, f"the signature with key {keyid} does not verify")
    statement = _statement(payload_type, payload)
    if statement is None:
        return _Part(label, S.UNVERIFIABLE, "the signed payload is not an in-toto statement")
    problem = _subject_problem(statement, purl, "sha512", digest)
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        predicate = {}
    if problem is None and (predicate.get("name"), predicate.get("version")) != (name, version):
        problem = f"it is for {predicate.get('name')}@{predicate.get('version')}"
    if problem is not None:
        return _Part(label, S.MISMATCH, problem)
    return _Part(label, S.VERIFIED, f"signed by the registry (key {keyid})")


# -- PyPI (PEP 740) ------------------------------------------------------------------

def verify_pypi_provenance(
    provenance: bytes | Mapping[str, Any], *, filename: str, sha256: str,
    trust: SigstoreTrust,
) -> ProvenanceResult:
    """Check a PEP 740 provenance object (the Integrity API's body) for one file.

    Every attestation must verify under ``trust`` and name exactly ``filename`` with
    ``sha256``; the Trusted Publisher PyPI states must agree with the certificate.
    """
    from pypi_attestations import Provenance

    try:
        if isinstance(provenance, bytes | bytearray):
            parsed = Provenance.model_validate_json(provenance)
        else:
            parsed = Provenance.model_validate(provenance)
    except ValidationError as exc:
        return _combine([_Part("provenance", S.UNVERIFIABLE, "not a PEP 740 provenance "
                               f"object ({exc.errors()[0]['msg']})")])
    parts = []
    for bundle in parsed.attestation_bundles:
        claim = _publisher_claim(bundle.publisher)
        for attestation in bundle.attestations:
            parts.append(_pypi_part(attestation, filename, sha256.lower(), trust, claim))
    if not parts:
        return _combine([_Part("provenance", S.MISSING, "it holds no attestation")])
    return _combine(parts)


def verify_pypi_attestation(
    attestation: bytes | Mapping[str, Any], *, filename: str, sha256: str,
    trust: SigstoreTrust,
) -> ProvenanceResult:
    """Check one PEP 740 attestation object (no publisher claim to compare with)."""
    from pypi_attestations import Attestation

    try:
        if isinstance(attestation, bytes | bytearray):
            parsed = Attestation.model_validate_json(attestation)
        else:
            parsed = Attestation.model_validate(attestation)
    except ValidationError as exc:
        return _combine([_Part("attestation", S.UNVERIFIABLE, "not a PEP 740 attestation "
                               f"({exc.errors()[0]['msg']})")])
    return _combine([_pypi_part(parsed, filename, sha256.lower(), trust, None)])


def _pypi_part(attestation: Attestation, filename: str, sha256: str, trust: SigstoreTrust,
               claim: BuildIdentity | None) -> _Part:
    from pypi_attestations import AttestationError
    from sigstore.errors import Error as SigstoreError

    try:
        bundle = attestation.to_bundle()
    except (AttestationError, SigstoreError, ValueError) as exc:
        return _Part("attestation", S.UNVERIFIABLE, f"cannot be read ({exc})")
    part = _verify_dsse(bundle, trust, filename, "sha256", sha256, "attestation")
    if part.status is not S.VERIFIED or claim is None or part.identity is None:
        return part
    problem = _claim_problem(claim, part.identity)
    if problem is not None:
        return _Part("attestation", S.MISMATCH, problem, part.identity)
    return part


def _publisher_claim(publisher: Any) -> BuildIdentity | None:
    """The Trusted Publisher PyPI states, as an identity (GitHub and GitLab only)."""
    kind = getattr(publisher, "kind", None)
    repository = getattr(publisher, "repository", None)
    if kind == "GitHub" and isinstance(repository, str):
        return BuildIdentity(Publisher.GITHUB, f"https://github.com/{repository}",
                             f".github/workflows/{publisher.workflow}")
    if kind == "GitLab" and isinstance(repository, str):
        return BuildIdentity(Publisher.GITLAB, f"https://gitlab.com/{repository}",
                             str(publisher.workflow_filepath))
    return None


def _claim_problem(claim: BuildIdentity, found: BuildIdentity) -> str | None:
    same_repo = claim.repository is not None and found.repository is not None and \
        normalize_repository(claim.repository) == normalize_repository(found.repository)
    if claim.publisher is not found.publisher or not same_repo:
        return (f"PyPI names the publisher {claim.repository}, its certificate "
                f"{found.repository or found.signer}")
    if claim.workflow is not None and found.workflow is not None and \
            claim.workflow.lstrip("/") != found.workflow.lstrip("/"):
        return f"PyPI names the workflow {claim.workflow}, its certificate {found.workflow}"
    return None
