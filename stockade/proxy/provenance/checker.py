"""The provenance service: the one adapter between requests and the verifiers.

Owns running the synchronous verifiers (sigstore, cryptography) off the event
loop, bounded by a timeout, at most once per artifact digest: a result is kept
in memory and in a small record store under the storage path
(``refs/provenance``, keyed by kind and digest), so a restart does not verify
again and ``stockade check`` and ``audit`` can show what was found. It also
holds the trust material the policy names (a sigstore trusted root, npm
registry keys), loaded once, and counts ``stockade_provenance_total``.

A record carries a fingerprint of what its result was computed from (the trust
material, the signatures the metadata published); a record whose inputs
changed is verified again. A verification that timed out or could not fetch
what it needs is ``unverifiable`` and never kept. What the results mean is
``stockade.policy.rules.provenance``'s to decide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache, TTLCache

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
from stockade.policy.rules.provenance import (
    ProvenanceRule,
    ReleaseProvenance,
    Requirement,
    history_with_verified,
    provenance_history,
)
from stockade.proxy.metrics import Metrics
from stockade.proxy.provenance.attestations import SigstoreTrust, SigstoreTrustError
from stockade.proxy.provenance.npm_signatures import NpmKeys, NpmKeysError, parse_keys
from stockade.storage.errors import StorageError
from stockade.storage.refs import RefStore

logger = logging.getLogger(__name__)

PROVENANCE_REFS = "provenance"
TIMEOUT_S = 30.0  # one verification, fetching included
NPM_KEYS_TTL_S = 24 * 3600.0  # the registry's keys change about once a year
_MEMORY = 65_536  # results kept in memory (a few hundred bytes each)
# names whose attested versions are kept in memory; re-read after a minute, so what
# another process sharing the storage verified is seen
_ATTESTED_NAMES = 16_384
_ATTESTED_TTL_S = 60.0
_TRUST_VERSIONS = 8  # trusted roots and key documents kept loaded (a few per policy)


def provenance_rule(engine: object) -> ProvenanceRule | None:
    """The policy's ``provenance`` rule, where the engine in force has one."""
    rule = getattr(engine, "provenance", None)
    return rule if isinstance(rule, ProvenanceRule) else None


# what verifying imports on first use: sigstore's verifier and models (with
# cryptography), pypi-attestations
VERIFIER_MODULES = ("sigstore.verify", "sigstore.models", "pypi_attestations",
                    "cryptography.hazmat.primitives.asymmetric.ec")


def import_verifiers(engine: object) -> bool:
    """With a provenance rule in the policy, import the verifiers' libraries now and
    return True; without one, nothing (they wait for a first use that may never come).

    A server's supervisor calls this before it forks its workers: they then share the
    modules' memory, and no worker's first check waits for them.
    """
    if provenance_rule(engine) is None:
        return False
    for name in VERIFIER_MODULES:
        importlib.import_module(name)
    return True


def attestations_wanted(rule: ProvenanceRule, ref: PackageRef) -> bool:
    """Whether the rule looks at sigstore attestations of ``ref`` at all."""
    return (rule.attestations is not Requirement.OFF
            or any(p.matches(ref) for p in rule.require_for)
            or any(e.matches(ref) for e in rule.identities))


def fingerprint(*parts: object) -> str:
    """A short hash of what a result was computed from."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def unverifiable(kind: ProvenanceKind, detail: str) -> ProvenanceResult:
    return ProvenanceResult(kind, ProvenanceStatus.UNVERIFIABLE, None, detail)


def to_record(result: ProvenanceResult) -> dict[str, Any]:
    """A result as JSON (the record store's form)."""
    identity = result.identity
    return {"kind": result.kind.value, "result": result.result.value, "detail": result.detail,
            "identity": None if identity is None else {
                "publisher": identity.publisher.value, "repository": identity.repository,
                "workflow": identity.workflow, "ref": identity.ref, "signer": identity.signer}}


def from_record(data: Mapping[str, Any]) -> ProvenanceResult | None:
    """A result read back; None when the record is not one."""
    try:
        who = data.get("identity")
        identity = None if not isinstance(who, Mapping) else BuildIdentity(
            Publisher(who["publisher"]), who.get("repository"), who.get("workflow"),
            who.get("ref"), who.get("signer"))
        return ProvenanceResult(ProvenanceKind(data["kind"]),
                                ProvenanceStatus(data["result"]), identity,
                                str(data.get("detail", "")))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Trust:
    trust: SigstoreTrust
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Keys:
    keys: NpmKeys
    fingerprint: str
    loaded_at: float


class ProvenanceChecker:
    """Verification results per artifact digest, computed once and kept."""

    def __init__(self, refs: RefStore, metrics: Metrics | None = None, *,
                 timeout_s: float = TIMEOUT_S, read_only: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._refs = refs
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._read_only = read_only
        self._clock = clock
        self._memory: LRUCache[str, tuple[str, ProvenanceResult]] = LRUCache(_MEMORY)
        self._flights: dict[str, asyncio.Task[ProvenanceResult]] = {}
        # keyed by the trust file's path and digest: a changed file is loaded anew
        self._trust: LRUCache[str, _Trust] = LRUCache(_TRUST_VERSIONS)
        self._keys: LRUCache[str, Keys] = LRUCache(_TRUST_VERSIONS)
        self._attested: TTLCache[str, frozenset[str]] = TTLCache(
            _ATTESTED_NAMES, _ATTESTED_TTL_S, timer=clock)
        self.verifications = 0  # verifications actually run (tests and bench read it)

    # -- trust material -------------------------------------------------------------

    async def trust(self, rule: ProvenanceRule) -> _Trust:
        """The sigstore verifier for the rule's trusted root (the production root shipped
        with sigstore when it names none), built once.

        Raises:
            SigstoreTrustError: the root cannot be used.
        """
        key = rule.trust_id(rule.trusted_root)
        found = self._trust.get(key)
        if found is None:
            found = await asyncio.to_thread(_load_trust, rule.trusted_root)
            self._trust[key] = found
        return found

    async def npm_keys(self, rule: ProvenanceRule, upstream: str,
                       fetch: Callable[[], Awaitable[bytes]]) -> Keys:
        """The npm registry's keys: the policy's ``npm_keys`` file, else the upstream's
        ``/-/npm/v1/keys`` (``fetch``), kept for a day.

        Raises:
            NpmKeysError: the document cannot be read.
            UpstreamError: fetching the upstream's keys failed.
        """
        source = rule.trust_id(rule.npm_keys) if rule.npm_keys is not None \
            else f"upstream {upstream}"
        found = self._keys.get(source)
        if found is not None and (rule.npm_keys is not None or
                                  self._clock() - found.loaded_at < NPM_KEYS_TTL_S):
            return found
        if rule.npm_keys is not None:
            body = await asyncio.to_thread(rule.npm_keys.read_bytes)
        else:
            body = await fetch()
        keys = parse_keys(body)
        found = Keys(keys, hashlib.sha256(body).hexdigest()[:16], self._clock())
        self._keys[source] = found
        return found

    # -- results --------------------------------------------------------------------

    def key(self, kind: ProvenanceKind, algorithm: str, digest: str) -> str:
        return f"{kind.value}|{algorithm}:{digest.lower()}"

    async def check(
        self, ecosystem: Ecosystem, kind: ProvenanceKind, algorithm: str, digest: str, *,
        inputs: str, compute: Callable[[], Awaitable[ProvenanceResult]],
        ref: PackageRef | None = None,
    ) -> ProvenanceResult:
        """The result for one artifact digest: kept, or computed once by ``compute``
        (several requests for one digest wait on one computation), counted. A result
        computed for ``ref`` is also kept under its version, for ``check``."""
        key = self.key(kind, algorithm, digest)
        result = await self._known(key, inputs)
        if result is None:
            flight = self._flights.get(key)
            first = flight is None
            if flight is None:
                # a task of its own: a client that goes away does not cancel the
                # verification others wait on (the timeout bounds it)
                flight = asyncio.create_task(
                    self._compute(ecosystem, kind, key, inputs, compute, ref),
                    name=f"provenance {key}")
                self._flights[key] = flight
                flight.add_done_callback(lambda _t: self._flights.pop(key, None))
            result = await asyncio.shield(flight)
            if not first:  # the request that started the verification reports it
                result = dataclasses.replace(result, reported=True)
        self.count(ecosystem, result)
        return result

    async def close(self) -> None:
        """Cancel verifications still running (at shutdown); nothing half-done is kept."""
        for task in list(self._flights.values()):
            task.cancel()
        await asyncio.gather(*self._flights.values(), return_exceptions=True)

    def count(self, ecosystem: Ecosystem, result: ProvenanceResult) -> None:
        if self._metrics is not None:
            self._metrics.provenance.labels(ecosystem, result.kind, result.result).inc()

    async def _known(self, key: str, inputs: str) -> ProvenanceResult | None:
        """A result kept for ``key`` from ``inputs``; ``reported``: an earlier request
        (or process) had it, and said so."""
        found = self._memory.get(key)
        if found is not None:
            return found[1] if found[0] == inputs else None
        record = await self._refs.get(key)
        if record is None or record.get("inputs") != inputs:
            return None
        result = from_record(record)
        if result is not None:
            result = dataclasses.replace(result, reported=True)
            self._memory[key] = (inputs, result)
        return result

    async def _compute(self, ecosystem: Ecosystem, kind: ProvenanceKind, key: str,
                       inputs: str, compute: Callable[[], Awaitable[ProvenanceResult]],
                       ref: PackageRef | None) -> ProvenanceResult:
        self.verifications += 1
        try:
            result = await asyncio.wait_for(compute(), self._timeout_s)
        except TimeoutError:
            logger.warning("provenance check %s timed out after %ss", key, self._timeout_s)
            return unverifiable(kind, f"verification took longer than {self._timeout_s:g}s")
        except _Transient as exc:
            return unverifiable(kind, str(exc))
        self._memory[key] = (inputs, dataclasses.replace(result, reported=True))
        if not self._read_only:
            try:
                await self._refs.put(key, {"inputs": inputs, "ecosystem": ecosystem.value,
                                           **to_record(result)})
                if ref is not None and ref.version is not None:
                    await self._remember_version(ref, result)
            except StorageError as exc:  # kept in memory; verified again after a restart
                logger.warning("cannot record provenance result %s: %s", key, exc)
        return result

    @staticmethod
    def _version_key(ref: PackageRef) -> str:
        return f"version|{ref.ecosystem.value}|{ref.name}|{ref.version}"

    async def _remember_version(self, ref: PackageRef, result: ProvenanceResult) -> None:
        key = self._version_key(ref)
        record = await self._refs.get(key) or {}
        results = {k: v for k, v in (record.get("results") or {}).items()
                   if isinstance(v, dict)}
        results[result.kind.value] = to_record(result)
        await self._refs.put(key, {"results": results})
        if result.kind is ProvenanceKind.ATTESTATION and \
                result.result is ProvenanceStatus.VERIFIED:
            await self._remember_attested(ref)

    # -- verified history (downgrades) ---------------------------------------------

    @staticmethod
    def _attested_key(ecosystem: Ecosystem, name: str) -> str:
        return f"attested|{ecosystem.value}|{name}"

    async def _remember_attested(self, ref: PackageRef) -> None:
        """Add ``ref``'s version to the versions of its name stockade verified an
        attestation of (one record per name, updated under the store's lock)."""
        version = ref.version

        def merge(current: dict[str, Any] | None) -> dict[str, Any]:
            listed = (current or {}).get("versions")
            versions = {v for v in listed if isinstance(v, str)} \
                if isinstance(listed, list) else set()
            return {"versions": sorted(versions | {str(version)})}

        key = self._attested_key(ref.ecosystem, ref.name)
        doc = await self._refs.update(key, merge)
        self._attested[key] = frozenset(doc["versions"])

    async def attested_versions(self, ecosystem: Ecosystem, name: str) -> frozenset[str]:
        """The versions of ``name`` whose attestation stockade verified."""
        key = self._attested_key(ecosystem, name)
        found = self._attested.get(key)
        if found is None:
            try:
                record = await self._refs.get(key)
            except StorageError as exc:
                logger.warning("cannot read provenance history %s: %s", key, exc)
                return frozenset()
            listed = (record or {}).get("versions")
            found = frozenset(v for v in listed if isinstance(v, str)) \
                if isinstance(listed, list) else frozenset()
            self._attested[key] = found
        return found

    async def with_histories(self, ecosystem: Ecosystem, name: str,
                             every: dict[str, Facts]) -> dict[str, Facts]:
        """``with_history`` for every version at once (metadata decisions): one sorted
        pass, and only for names with a version stockade verified."""
        attested = await self.attested_versions(ecosystem, name)
        if not attested:
            return every
        history = provenance_history({v: ReleaseProvenance(
            f.published_at, bool(f.provenance_claimed), v in attested)
            for v, f in every.items()})
        return {v: f if history.get(v) == f.provenance_before
                else dataclasses.replace(f, provenance_before=history.get(v))
                for v, f in every.items()}

    async def with_history(self, ref: PackageRef, every: Mapping[str, Facts],
                           facts: Facts) -> Facts:
        """``facts`` of ``ref``'s version with ``provenance_before`` counting the versions
        stockade verified, besides those the metadata claims provenance for: a downgrade
        is seen even where the metadata no longer claims it for the older versions.
        """
        if ref.version is None:
            return facts
        attested = await self.attested_versions(ref.ecosystem, ref.name)
        if not attested or attested == {ref.version}:
            return facts  # nothing the metadata alone does not tell
        before = history_with_verified(ref.version, every, attested)
        if before is None or before == facts.provenance_before:
            return facts
        return dataclasses.replace(facts, provenance_before=before)

    async def known_version(self, ref: PackageRef) -> tuple[ProvenanceResult, ...] | None:
        """What was last verified for a version (one result per kind), or None when
        nothing was: the facts ``check``, ``audit`` and explain show and decide on."""
        if ref.version is None:
            return None
        record = await self._refs.get(self._version_key(ref))
        stored = (record or {}).get("results")
        if not isinstance(stored, dict):
            return None
        found = tuple(r for v in stored.values() if isinstance(v, dict)
                      and (r := from_record(v)) is not None)
        return found or None

    def known(self, kind: ProvenanceKind, algorithm: str, digest: str) -> ProvenanceResult | None:
        """A result recorded for the digest, whatever it was computed from (synchronous:
        for ``check`` and ``audit``, which verify nothing)."""
        record = self._refs.read(self.key(kind, algorithm, digest))
        return None if record is None else from_record(record)


class TransientError(Exception):
    """What a verification needs could not be had now (an upstream failed): the result
    is ``unverifiable`` and not kept. The message says why."""


_Transient = (TransientError, NpmKeysError, SigstoreTrustError)


def _load_trust(path: Path | None) -> _Trust:
    if path is None:
        trust = SigstoreTrust.production()
        return _Trust(trust, "production")
    data = path.read_bytes()
    return _Trust(SigstoreTrust.from_json(data, source=str(path)),
                  hashlib.sha256(data).hexdigest()[:16])
