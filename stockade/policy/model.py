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
    digests: dict[str, str] = field(default_factory=dict)


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

    @property
    def blocks(self) -> bool:
        """True when the request must be refused (enforce mode and BLOCK)."""
        return self.decision is Decision.BLOCK and not self.audit_only

    def refusal_phrase(self) -> str:
        """The sentence a client prints: ``Blocked by stockade: <reason> (rule X)``."""
        return f"Blocked by stockade: {self.reason} (rule {self.rule})"


ALLOWED = Verdict(Decision.ALLOW, "default", "no rule refuses it")


class Rule(Protocol):
    """One policy rule: a verdict when it applies, None when it has nothing to say."""

    name: str

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None: ...
