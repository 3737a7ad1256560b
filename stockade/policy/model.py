"""The values policy decides on and the verdicts it returns.

This module owns the vocabulary shared by the engine, the rules, the proxy and
the CLI. It does no I/O: facts are gathered by ``stockade.proxy`` and handed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Ecosystem(enum.StrEnum):
    """A package ecosystem stockade serves."""

    PYPI = "pypi"
    NPM = "npm"
    MAVEN = "maven"


class Decision(enum.StrEnum):
    """What happens to a request. Ordered from most to least permissive."""

    ALLOW = "allow"
    WARN = "warn"
    HOLD = "hold"  # refused for now, with a date it lifts by itself (or an approval)
    BLOCK = "block"


class Mode(enum.StrEnum):
    """How a rule (or the whole policy) acts on what it finds."""

    ENFORCE = "enforce"  # refusals refuse
    AUDIT = "audit"  # refusals are recorded and counted, the request goes through


@dataclass(frozen=True, slots=True)
class PackageRef:
    """A package, and optionally one version and one file of it.

    ``name`` is as the client asked for it; rules normalise it themselves.
    For Maven the name is ``groupId:artifactId``.
    """

    ecosystem: Ecosystem
    name: str
    version: str | None = None
    filename: str | None = None

    def display(self) -> str:
        """The reference as a developer would write it."""
        if self.version is None:
            return self.name
        sep = ":" if self.ecosystem is Ecosystem.MAVEN else "@"
        if self.ecosystem is Ecosystem.PYPI:
            return f"{self.name} {self.version}"
        return f"{self.name}{sep}{self.version}"


class ProvenanceKind(enum.StrEnum):
    """What was checked: an npm registry signature, a sigstore attestation, an OpenPGP
    signature (Maven ``.asc``)."""

    SIGNATURE = "signature"
    ATTESTATION = "attestation"
    PGP = "pgp"


class ProvenanceStatus(enum.StrEnum):
    """What a check found.

    ``unverifiable`` is a bundle or signature that could not be checked for a reason
    other than a failed check (a format the verifier cannot load, a key nobody
    published): never counted as verified, never as tampered. ``mismatch`` is a valid
    signature over something else (another package, digest or signer).
    """

    VERIFIED = "verified"
    MISSING = "missing"
    INVALID = "invalid"
    UNVERIFIABLE = "unverifiable"
    MISMATCH = "mismatch"


class Publisher(enum.StrEnum):
    """Who vouched for a build identity (the OIDC issuer of the signing certificate)."""

    GITHUB = "github"
    GITLAB = "gitlab"
    GOOGLE = "google"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class BuildIdentity:
    """Who built an artifact, as a verified signing certificate says.

    ``repository`` is a full URL (``https://github.com/owner/repo``); ``workflow``
    the build file's path in it (``.github/workflows/release.yml``); ``signer`` the
    certificate's subject (a workflow URL, or an e-mail address for Google).
    """

    publisher: Publisher
    repository: str | None = None
    workflow: str | None = None
    ref: str | None = None
    signer: str | None = None


@dataclass(frozen=True, slots=True)
class ProvenanceResult:
    """One verification of one artifact: a fact policy decides on."""

    kind: ProvenanceKind
    result: ProvenanceStatus
    identity: BuildIdentity | None = None
    detail: str = ""
    # Already reported for this artifact digest (a result kept from an earlier
    # request): a rule warns about it once, not on every request.
    reported: bool = field(default=False, compare=False)

    @property
    def verified(self) -> bool:
        return self.result is ProvenanceStatus.VERIFIED


@dataclass(frozen=True, slots=True)
class ProvenanceHistory:
    """The newest version published before this one that had provenance.

    ``verified``: stockade verified it; otherwise the upstream's metadata only
    claimed it (``dist.attestations`` on npm, a ``provenance`` URL on PyPI).
    """

    version: str
    verified: bool = False


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """What a project is, as its metadata says, read once per metadata document.

    ``first_release`` None: its age is unknown (an HTML-only index); ``releases``
    None: unknown. ``summary`` and ``repository`` None: not gathered.
    """

    first_release: datetime | None = None
    releases: int | None = None
    owners: tuple[str, ...] = ()
    summary: str | None = None
    repository: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the proxy knows about a package or version when asking for a decision.

    Every field is optional: a rule that needs a fact which is absent decides
    by its own fail-open or fail-closed setting.
    """

    upstream: str | None = None
    internal: bool = False
    published_at: datetime | None = None
    first_seen_at: datetime | None = None
    has_install_script: bool | None = None
    has_wheel: bool | None = None
    is_sdist: bool | None = None
    license: str | None = None
    yanked: bool = False
    # what the upstream publishes (or the bytes hash to) now: algorithm -> lower-case hex
    digests: dict[str, str] = field(default_factory=dict)
    # Provenance of this version or file. None: not gathered (a metadata-only decision);
    # the proxy fills it for artifact requests, a MISSING result where nothing was found.
    provenance: tuple[ProvenanceResult, ...] | None = None
    # Does the upstream's metadata claim provenance for it? None: unknown.
    provenance_claimed: bool | None = None
    # The newest earlier version that had provenance; None: none had (or unknown).
    provenance_before: ProvenanceHistory | None = None
    # The digests stockade recorded when it first admitted this very file
    # (name, version, file name); None: never admitted before.
    admitted_digests: dict[str, str] | None = None
    # What the project is (age, releases, owners, summary, repository); None: a
    # decision on the name alone, before any metadata was read.
    project: ProjectFacts | None = None
    # A name decided before its metadata is read, where every version is then decided on
    # the project's facts (an npm packument): a look-alike the loose tier decides is
    # left to those decisions rather than refused on the name alone.
    project_follows: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """One decision with its reason.

    A refusal is data, not an exception: the same verdict feeds the HTTP 403,
    ``stockade check --json``, the explain API and version filtering.
    """

    decision: Decision
    rule: str
    reason: str
    target: str | None = None
    audit_only: bool = False
    # full values behind the reason (e.g. both digests of a republished file), for the
    # decision log and explain: the reason itself stays short
    evidence: tuple[tuple[str, str], ...] = ()
    # a hold: when it lifts by itself (None: only an approval lifts it)
    until: datetime | None = None

    @property
    def blocks(self) -> bool:
        """True when the request must be refused (enforce mode, BLOCK or HOLD)."""
        return self.decision in _REFUSING and not self.audit_only

    def refusal_phrase(self) -> str:
        """The sentence a client prints: ``Blocked by stockade: <reason> (rule X)``."""
        return f"Blocked by stockade: {self.reason} (rule {self.rule})"


_REFUSING = frozenset({Decision.BLOCK, Decision.HOLD})
ALLOWED = Verdict(Decision.ALLOW, "default", "no rule refuses it")


class Rule(Protocol):
    """One policy rule: a verdict when it applies, None when it has nothing to say."""

    name: str

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None: ...
