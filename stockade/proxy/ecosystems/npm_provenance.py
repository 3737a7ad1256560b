"""npm provenance facts for a tarball request: registry signatures and attestations.

Owns gathering what the ``provenance`` rule decides on for one npm version:
``dist.signatures`` checked against the registry's keys (the policy's pinned
``npm_keys`` file, else the upstream's ``/-/npm/v1/keys`` through the metadata
cache), and the attestations document (``dist.attestations.url``, fetched from
the upstream that owns the name, its allowed hosts only) checked with sigstore.
Each is verified once per tarball digest by the provenance service; this module
only says what to verify and from which inputs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from stockade.policy.model import (
    Ecosystem,
    Facts,
    PackageRef,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
)
from stockade.policy.rules.provenance import ProvenanceRule, Requirement
from stockade.proxy.errors import UpstreamError, UpstreamStatusError
from stockade.proxy.provenance.attestations import sha512_hex, verify_npm_attestations
from stockade.proxy.provenance.checker import (
    NPM_KEYS_TTL_S,
    Keys,
    ProvenanceChecker,
    TransientError,
    attestations_wanted,
    fingerprint,
    provenance_rule,
    unverifiable,
)
from stockade.proxy.provenance.npm_signatures import NpmKeys, NpmKeysError, verify_signatures

if TYPE_CHECKING:
    from stockade.proxy.admission import Admission
    from stockade.proxy.ecosystems.npm_documents import Tarball
    from stockade.proxy.upstream import Upstream

ECO = Ecosystem.NPM
_NO_KEYS = b'{"keys": []}'


async def gather(adm: Admission, checker: ProvenanceChecker, upstream: Upstream, name: str,
                 entry: Tarball, facts: Facts, *, doc_url: str) -> Facts:
    """``facts`` with ``provenance`` filled for the checks the policy asks of ``name``;
    unchanged when the policy has no provenance rule or asks none of them."""
    rule = provenance_rule(adm.gate.engine)
    if rule is None:
        return facts
    ref = PackageRef(ECO, name, entry.version)
    want_signatures = rule.signatures is not Requirement.OFF
    want_attestations = attestations_wanted(rule, ref)
    if not (want_signatures or want_attestations):
        return facts
    keys = await _keys(adm, checker, rule, upstream)
    results: list[ProvenanceResult] = []
    if want_signatures:
        results.append(await _signature(checker, name, entry, facts, keys))
    if want_attestations:
        results.append(await _attestation(adm, checker, rule, upstream, name, entry, keys,
                                          doc_url))
    return dataclasses.replace(facts, provenance=tuple(results))


async def _keys(adm: Admission, checker: ProvenanceChecker, rule: ProvenanceRule,
                upstream: Upstream) -> Keys | str:
    """The registry's keys, or why they cannot be had."""
    async def fetch() -> bytes:
        url = f"{upstream.url.rstrip('/')}/-/npm/v1/keys"
        try:
            doc = await adm.document(ECO, upstream, url, accept="application/json",
                                     ttl_s=NPM_KEYS_TTL_S)
        except UpstreamStatusError as exc:
            if exc.upstream_status in (400, 404):  # as npm: a registry without keys
                return _NO_KEYS
            raise
        return doc.body

    try:
        return await checker.npm_keys(rule, upstream.name, fetch)
    except (NpmKeysError, UpstreamError, OSError) as exc:
        return f"the registry's keys cannot be had ({exc})"


async def _signature(checker: ProvenanceChecker, name: str, entry: Tarball, facts: Facts,
                     keys: Keys | str) -> ProvenanceResult:
    kind = ProvenanceKind.SIGNATURE
    digest = sha512_hex(entry.integrity)
    if isinstance(keys, str):
        return _counted(checker, unverifiable(kind, keys))
    signatures = [{"keyid": k, "sig": s} for k, s in entry.signatures]

    def verify() -> ProvenanceResult:
        return verify_signatures(name=name, version=entry.version, integrity=entry.integrity,
                                 signatures=signatures, keys=keys.keys,
                                 published_at=facts.published_at)

    if digest is None or not signatures:  # nothing to verify: cheap, not kept
        return _counted(checker, verify())

    async def compute() -> ProvenanceResult:
        return await asyncio.to_thread(verify)

    inputs = fingerprint(f"{name}@{entry.version}", entry.integrity, entry.signatures,
                         keys.fingerprint, facts.published_at)
    return await checker.check(ECO, kind, "sha512", digest, inputs=inputs, compute=compute,
                               ref=PackageRef(ECO, name, entry.version))


async def _attestation(adm: Admission, checker: ProvenanceChecker, rule: ProvenanceRule,
                       upstream: Upstream, name: str, entry: Tarball, keys: Keys | str,
                       doc_url: str) -> ProvenanceResult:
    kind = ProvenanceKind.ATTESTATION
    if entry.attestations_url is None:
        return _counted(checker, ProvenanceResult(
            kind, ProvenanceStatus.MISSING, None, "the registry lists no attestations"))
    digest = sha512_hex(entry.integrity)
    if digest is None:
        return _counted(checker, unverifiable(kind, "no sha512 integrity to compare with"))
    url = upstream.resolve(entry.attestations_url, doc_url)
    if url is None:
        return _counted(checker, unverifiable(
            kind, f"its attestations URL is outside upstream {upstream.name}"))
    registry_keys = keys.keys if not isinstance(keys, str) else NpmKeys()
    keys_id = keys.fingerprint if not isinstance(keys, str) else "none"

    async def compute() -> ProvenanceResult:
        try:
            doc = await adm.document(ECO, upstream, url, accept="application/json",
                                     ttl_s=NPM_KEYS_TTL_S)
        except UpstreamError as exc:
            raise TransientError(f"its attestations could not be fetched ({exc})") from exc
        trust = await checker.trust(rule)
        return await asyncio.to_thread(
            verify_npm_attestations, doc.body, name=name, version=entry.version,
            integrity=entry.integrity, trust=trust.trust, keys=registry_keys)

    inputs = fingerprint(f"{name}@{entry.version}", rule.trust_id(rule.trusted_root), keys_id)
    return await checker.check(ECO, kind, "sha512", digest, inputs=inputs, compute=compute,
                               ref=PackageRef(ECO, name, entry.version))


def _counted(checker: ProvenanceChecker, result: ProvenanceResult) -> ProvenanceResult:
    checker.count(ECO, result)
    return result
