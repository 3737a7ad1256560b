"""Provenance: who built a version, and whether its signatures hold.

Owns the ``provenance`` rule. It decides on verification results gathered by the
proxy (``Facts.provenance``: npm registry signatures, sigstore attestations for npm
and PyPI, OpenPGP signatures for Maven) and on what the upstream's metadata claims:

- a signature or attestation that fails its check, or is about another artifact,
  refuses (unless that kind is ``off``); an OpenPGP signature is checked only for
  groupIds the policy names keys for, and there it is required;
- ``require`` (or a ``require_for`` pattern, or an ``identities`` entry) refuses a
  version without verified provenance; ``unverifiable`` counts as without;
- an ``identities`` entry refuses a verified attestation built anywhere else (an
  account takeover publishing from another repository);
- downgrade: a version without verified provenance published after versions that
  had it. An unverifiable attestation (a format this verifier cannot load) is not a
  downgrade from versions whose provenance the upstream only claimed, since those
  could not be told apart either; it is one from a version stockade verified.

With ``Facts.provenance`` None (a metadata-only decision) only what the metadata
tells is decided: a version that claims no provenance where it is required.
Pure: the proxy verifies; this module never reads a key or a bundle.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from stockade.policy.model import (
    BuildIdentity,
    Decision,
    Ecosystem,
    Facts,
    Mode,
    PackageRef,
    ProvenanceHistory,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
    Verdict,
)
from stockade.policy.names import normalize
from stockade.policy.rules.base import finding

S = ProvenanceStatus
MAX_REASON = 299  # reason phrases stay under 300 characters
_BAD = frozenset((S.INVALID, S.MISMATCH))
# bound once: the rule runs on every versioned request, and these are compared there
_SIGNATURE, _ATTESTATION, _PGP = (ProvenanceKind.SIGNATURE, ProvenanceKind.ATTESTATION,
                                  ProvenanceKind.PGP)
_VERIFIED, _UNVERIFIABLE = S.VERIFIED, S.UNVERIFIABLE


class Requirement(enum.StrEnum):
    """``signatures`` and ``attestations``: ignore, refuse bad ones, or refuse absent too."""

    OFF = "off"
    VERIFY = "verify"
    REQUIRE = "require"


class DowngradeAction(enum.StrEnum):
    """What a provenance downgrade does."""

    REFUSE = "refuse"
    WARN = "warn"
    OFF = "off"


def repository_url(value: str) -> str | None:
    """``https://host/owner/repo`` (case kept); None when ``value`` names no repository.

    ``https://github.com/owner/repo``, ``git+https://github.com/owner/repo.git``,
    ``git@github.com:owner/repo`` and ``owner/repo`` (GitHub assumed) are the same.
    """
    text = value.strip().removeprefix("git+")
    if "://" in text:
        split = urlsplit(text)
        host, path = split.hostname or "", split.path
    elif text.startswith("git@"):
        host, _, path = text[4:].partition(":")
    else:
        first, _, rest = text.strip("/").partition("/")
        host, path = (first, rest) if "." in first else ("github.com", text)
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 2:
        parts[-1] = parts[-1].removesuffix(".git")
    if not host or len(parts) < 2 or not parts[-1]:
        return None
    return "https://" + "/".join([host.lower().removeprefix("www."), *parts])


@functools.lru_cache(maxsize=4096)  # a few repositories recur on every decision
def normalize_repository(value: str) -> str | None:
    """``host/owner/repo`` in lower case, for comparing; None when it names none."""
    url = repository_url(value)
    return None if url is None else url.removeprefix("https://").lower()


@functools.lru_cache(maxsize=1024)  # the policy's own patterns: a handful
def _normalized(ecosystem: Ecosystem, pattern: str) -> str:
    return normalize(ecosystem, pattern)


@dataclass(frozen=True, slots=True)
class NamePattern:
    """A name pattern, in one ecosystem or (``ecosystem`` None) in every one."""

    pattern: str
    ecosystem: Ecosystem | None = None

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        """``npm:@acme/*``, ``pypi:acme-*``, ``maven:com.acme:*`` or a bare pattern.

        Raises:
            ValueError: the pattern is empty.
        """
        prefix, sep, rest = text.partition(":")
        ecosystem = next((e for e in Ecosystem if sep and prefix.strip().lower() == e.value),
                         None)
        pattern = (rest if ecosystem is not None else text).strip()
        if not pattern:
            raise ValueError(f"{text!r} is an empty name pattern")
        return cls(pattern, ecosystem)

    def matches(self, ref: PackageRef) -> bool:
        if self.ecosystem is not None and ref.ecosystem is not self.ecosystem:
            return False
        return fnmatch.fnmatchcase(normalize(ref.ecosystem, ref.name),
                                   _normalized(ref.ecosystem, self.pattern))

    def __str__(self) -> str:
        return self.pattern if self.ecosystem is None else f"{self.ecosystem}:{self.pattern}"


@dataclass(frozen=True, slots=True)
class IdentityEntry:
    """Who may build the names a pattern matches: a repository, optionally a workflow
    (a file name such as ``release.yml``, or its path) and a publisher."""

    ecosystem: Ecosystem
    pattern: str
    repository: str  # as written, e.g. https://github.com/sigstore/sigstore-js
    workflow: str | None = None
    publisher: Publisher | None = None
    shown: str = field(init=False, compare=False)  # the repository as a URL, for reasons
    _key: str = field(init=False, compare=False, repr=False)  # normalised, for comparing

    def __post_init__(self) -> None:
        key, url = normalize_repository(self.repository), repository_url(self.repository)
        if key is None or url is None:
            raise ValueError(f"{self.repository!r} is not a repository (write "
                             "https://github.com/owner/repo or owner/repo)")
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "shown", url)

    def matches(self, ref: PackageRef) -> bool:
        return ref.ecosystem is self.ecosystem and fnmatch.fnmatchcase(
            normalize(ref.ecosystem, ref.name), _normalized(self.ecosystem, self.pattern))

    def problem(self, identity: BuildIdentity) -> str | None:
        """How ``identity`` differs from this entry (a phrase after "was built …")."""
        if normalize_repository(identity.repository or "") != self._key:
            return f"from {identity.repository or identity.signer or 'an unknown source'}, " \
                   f"not {self.shown}"
        if self.workflow is not None and not _same_workflow(self.workflow, identity.workflow):
            return f"by workflow {identity.workflow or '(none)'}, not {self.workflow}"
        if self.publisher is not None and identity.publisher is not self.publisher:
            return f"through {identity.publisher}, not {self.publisher}"
        return None


def _same_workflow(allowed: str, found: str | None) -> bool:
    if found is None:
        return False
    allowed, found = allowed.strip().lstrip("/"), found.strip().lstrip("/")
    if "/" not in allowed:
        return found.rsplit("/", 1)[-1] == allowed
    return found == allowed


@dataclass(frozen=True, slots=True)
class PgpGroup:
    """OpenPGP keys (armored files) allowed to sign artifacts of a groupId pattern."""

    pattern: str  # on the groupId, e.g. org.apache.*
    keys: tuple[Path, ...]

    def matches(self, ref: PackageRef) -> bool:
        group = ref.name.partition(":")[0].strip().lower()
        return ref.ecosystem is Ecosystem.MAVEN and fnmatch.fnmatchcase(group,
                                                                        self.pattern.lower())


@dataclass(frozen=True, slots=True)
class ReleaseProvenance:
    """What is known of one version's provenance, to find downgrades."""

    published_at: datetime | None
    claimed: bool  # the upstream's metadata says it has provenance
    verified: bool = False  # stockade verified it


def provenance_history(releases: Mapping[str, ReleaseProvenance]
                       ) -> dict[str, ProvenanceHistory | None]:
    """For each version, the newest version published before it that had provenance.

    ``verified`` in the answer: stockade verified any of those earlier versions.
    Versions without a publish date are not ordered and get None. One sorted pass.
    """
    dated = sorted(((r.published_at, v, r) for v, r in releases.items()
                    if r.published_at is not None), key=lambda t: (t[0], t[1]))
    out: dict[str, ProvenanceHistory | None] = dict.fromkeys(releases)
    newest: str | None = None
    verified = False
    i = 0
    while i < len(dated):
        j = i  # versions published at the same instant are not "before" each other
        while j < len(dated) and dated[j][0] == dated[i][0]:
            out[dated[j][1]] = None if newest is None else ProvenanceHistory(newest, verified)
            j += 1
        for _, version, release in dated[i:j]:
            if release.claimed or release.verified:
                newest, verified = version, verified or release.verified
        i = j
    return out


def history_with_verified(version: str, facts: Mapping[str, Facts],
                          verified: Collection[str]) -> ProvenanceHistory | None:
    """``version``'s ``provenance_before`` counting, besides what the metadata claims,
    the versions stockade verified earlier (``verified``): metadata that no longer
    claims provenance for them (stripped by a compromised account or a mirror) does
    not hide a downgrade. One pass over the versions; None when none had provenance
    before ``version`` (or it has no publish date).
    """
    published = facts[version].published_at if version in facts else None
    if published is None:
        return None
    newest: tuple[datetime, str] | None = None
    any_verified = False
    for other, f in facts.items():
        when = f.published_at
        if when is None or when >= published:
            continue
        is_verified = other in verified
        if not (is_verified or f.provenance_claimed):
            continue
        any_verified = any_verified or is_verified
        if newest is None or (when, other) > newest:
            newest = (when, other)
    return None if newest is None else ProvenanceHistory(newest[1], any_verified)


def cap(reason: str) -> str:
    """A reason phrase cut to stay under 300 characters."""
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 3] + "..."


def _who(ref: PackageRef) -> str:
    return f"{ref.name} {ref.version}"


@dataclass(frozen=True, slots=True)
class _Results:
    """One version's results, split by kind once per decision."""

    signatures: tuple[ProvenanceResult, ...]
    attestations: tuple[ProvenanceResult, ...]
    pgp: tuple[ProvenanceResult, ...]
    attested: bool  # a verified attestation

    @classmethod
    def of(cls, results: Sequence[ProvenanceResult]) -> _Results:
        signatures, attestations, pgp = [], [], []
        attested = False
        for r in results:  # one plain loop: this runs on every versioned request
            if r.kind is _ATTESTATION:
                attestations.append(r)
                attested = attested or r.result is _VERIFIED
            elif r.kind is _SIGNATURE:
                signatures.append(r)
            else:
                pgp.append(r)
        return cls(tuple(signatures), tuple(attestations), tuple(pgp), attested)


@dataclass
class ProvenanceRule:
    """The ``provenance`` rule (applies to versions and files, not names)."""

    signatures: Requirement = Requirement.VERIFY
    attestations: Requirement = Requirement.VERIFY
    require_for: Sequence[NamePattern] = ()
    identities: Sequence[IdentityEntry] = ()
    downgrade: DowngradeAction = DowngradeAction.REFUSE
    pgp_keys: Sequence[PgpGroup] = ()
    trusted_root: Path | None = None  # None: the production root shipped with sigstore
    npm_keys: Path | None = None  # None: fetched from the upstream
    mode: Mode = Mode.ENFORCE
    name: str = "provenance"
    # The trust files' digests as the policy load read them (part of the revision): the
    # proxy keys loaded trust and kept results by them, so results made under other
    # trust are not reused once a file changes and the policy is reloaded.
    trust_digests: Mapping[Path, str] = field(default_factory=dict)

    @property
    def trust_files(self) -> tuple[Path, ...]:
        """The files the rule's trust is read from (watched for changes)."""
        files = [p for p in (self.trusted_root, self.npm_keys) if p is not None]
        files += [k for g in self.pgp_keys for k in g.keys]
        return tuple(dict.fromkeys(files))

    def trust_id(self, path: Path | None) -> str:
        """What identifies one trust file's content: its path and digest ("production"
        for the trusted root shipped with sigstore)."""
        if path is None:
            return "production"
        return f"{path}@{self.trust_digests.get(path, 'unread')}"

    def pgp_keys_for(self, ref: PackageRef) -> tuple[Path, ...]:
        """The key files allowed to sign a Maven artifact of ``ref``'s groupId."""
        return tuple(k for g in self.pgp_keys if g.matches(ref) for k in g.keys)

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if ref.version is None:
            return None
        identities = [e for e in self.identities if e.matches(ref)]
        required = self._required(ref, identities)
        if facts.provenance is None:
            return self._from_claims(ref, facts, required)
        seen = _Results.of(facts.provenance)
        return (self._bad(ref, facts.provenance, required is not None)
                or self._identity(ref, seen, identities)
                or self._requirements(ref, seen, required)
                or self._downgrade(ref, facts, seen)
                or self._unverifiable(ref, seen))

    def _required(self, ref: PackageRef, identities: Sequence[IdentityEntry]) -> str | None:
        """Why verified provenance is required for ``ref``; None when it is not."""
        pattern = next((p for p in self.require_for if p.matches(ref)), None)
        if pattern is not None:
            return f"the policy requires it for {pattern}"
        if identities:
            return f"the policy allows only builds from {identities[0].shown}"
        if self.attestations is Requirement.REQUIRE and ref.ecosystem is not Ecosystem.MAVEN:
            return "the policy requires it (attestations: require)"
        return None

    def _block(self, reason: str, decision: Decision = Decision.BLOCK) -> Verdict:
        return finding(self.name, self.mode, decision, cap(reason))

    def _from_claims(self, ref: PackageRef, facts: Facts, required: str | None
                     ) -> Verdict | None:
        if facts.provenance_claimed is not False:
            return None
        if required is not None:
            return self._block(f"{_who(ref)} has no provenance, and {required}")
        return self._downgrade(ref, facts, _Results((), (), (), False))

    def _bad(self, ref: PackageRef, results: Sequence[ProvenanceResult],
             attestations_needed: bool) -> Verdict | None:
        for r in results:
            if r.result not in _BAD:
                continue
            if r.kind is _SIGNATURE and self.signatures is not Requirement.OFF:
                return self._block(f"{_who(ref)} has a bad npm registry signature: {r.detail}")
            if r.kind is _ATTESTATION and (
                    attestations_needed or self.attestations is not Requirement.OFF):
                what = "fails verification" if r.result is S.INVALID else \
                    "does not match the artifact"
                return self._block(f"{_who(ref)} has provenance that {what}: {r.detail}")
        return None

    def _identity(self, ref: PackageRef, seen: _Results,
                  identities: Sequence[IdentityEntry]) -> Verdict | None:
        if not identities or not seen.attested:
            return None  # without verified provenance, _requirements refuses it
        for r in seen.attestations:
            if r.result is not _VERIFIED:
                continue
            if r.identity is None:
                return self._block(f"{_who(ref)} has provenance that names no builder, and "
                                   f"the policy allows only builds from "
                                   f"{identities[0].shown}")
            first = identities[0].problem(r.identity)
            if first is not None and all(e.problem(r.identity) is not None
                                         for e in identities[1:]):
                return self._block(f"{_who(ref)} was built {first}")
        return None

    def _requirements(self, ref: PackageRef, seen: _Results,
                      required: str | None) -> Verdict | None:
        if required is not None and not seen.attested:
            return self._block(f"{_who(ref)} has no verified provenance "
                               f"({_why_not(seen.attestations)}), and {required}")
        if self.signatures is Requirement.REQUIRE and ref.ecosystem is Ecosystem.NPM and \
                not any(r.result is _VERIFIED for r in seen.signatures):
            return self._block(f"{_who(ref)} has no verified npm registry signature "
                               f"({_why_not(seen.signatures)}), and the policy requires one")
        if not self.pgp_keys or ref.ecosystem is not Ecosystem.MAVEN:
            return None
        group = next((g for g in self.pgp_keys if g.matches(ref)), None)
        if group is None:
            return None
        bad = next((r for r in seen.pgp if r.result is not _VERIFIED), None)
        if seen.pgp and bad is None:
            return None
        state = "no OpenPGP signature" if bad is None or bad.result is S.MISSING \
            else f"an OpenPGP signature that is {bad.result}: {bad.detail}"
        return self._block(f"{_who(ref)} has {state}, and the policy requires one by the "
                           f"keys for {group.pattern}")

    def _downgrade(self, ref: PackageRef, facts: Facts, seen: _Results) -> Verdict | None:
        before = facts.provenance_before
        if self.downgrade is DowngradeAction.OFF or before is None or seen.attested:
            return None
        if not before.verified and any(r.result is _UNVERIFIABLE for r in seen.attestations):
            return None
        how = "verified by stockade" if before.verified else "as the upstream says"
        decision = Decision.BLOCK if self.downgrade is DowngradeAction.REFUSE else Decision.WARN
        return self._block(f"{_who(ref)} has no verified provenance, but {before.version}, "
                           f"published before it, had provenance ({how})", decision)

    def _unverifiable(self, ref: PackageRef, seen: _Results) -> Verdict | None:
        watched = ((seen.attestations if self.attestations is not Requirement.OFF else ())
                   + (seen.signatures if self.signatures is not Requirement.OFF else ()))
        for r in watched:
            if r.result is _UNVERIFIABLE and not r.reported:  # warned once per digest
                return self._block(f"{_who(ref)} has {r.kind} provenance stockade cannot "
                                   f"check: {r.detail}", Decision.WARN)
        return None


def _why_not(results: Sequence[ProvenanceResult]) -> str:
    if not results:
        return "none found"
    worst = results[0]
    return f"{worst.result}: {worst.detail}" if worst.detail else str(worst.result)
