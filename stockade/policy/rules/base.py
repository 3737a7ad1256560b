"""What rules share: matching entries by ecosystem, name pattern and versions; modes.

Owns ``Entry`` (an ecosystem, an fnmatch pattern on the normalised name, an
optional version range) and turning a finding into a verdict in the rule's mode.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta

from stockade.policy.model import Decision, Ecosystem, Mode, PackageRef, Verdict
from stockade.policy.names import normalize
from stockade.policy.versions import VersionRange


@dataclass(frozen=True, slots=True)
class Entry:
    """Packages named by ecosystem, name pattern and (optionally) a version range."""

    ecosystem: Ecosystem
    pattern: str  # normalised; fnmatch wildcards allowed
    versions: VersionRange | None = None

    def matches_name(self, ref: PackageRef) -> bool:
        if ref.ecosystem is not self.ecosystem:
            return False
        return fnmatch.fnmatchcase(normalize(ref.ecosystem, ref.name), self.pattern)

    def matches(self, ref: PackageRef) -> bool:
        """Name matches, and the version too where the entry names versions.

        A name-level reference (no version) matches only entries without versions:
        an entry for one bad version must not refuse the whole package.
        """
        if not self.matches_name(ref):
            return False
        if self.versions is None:
            return True
        return ref.version is not None and self.versions.contains(ref.version)


# read once: an enum member is read through its class's metaclass, in Python
_AUDIT = Mode.AUDIT
_HELD_BACK = frozenset({Decision.BLOCK, Decision.HOLD})


def finding(rule: str, mode: Mode, decision: Decision, reason: str,
            target: str | None = None, *,
            evidence: tuple[tuple[str, str], ...] = (),
            until: datetime | None = None) -> Verdict:
    """A verdict of ``rule``; in audit mode a refusal is recorded but does not refuse."""
    return Verdict(decision, rule, reason, target,
                   audit_only=mode is _AUDIT and decision in _HELD_BACK,
                   evidence=evidence, until=until)


def human(delta: timedelta) -> str:
    """``3 days``, ``5 hours``, ``12 minutes``: how long, as a person says it."""
    # whole seconds, as ``int(delta.total_seconds())`` (a timedelta keeps its seconds
    # and microseconds positive: this is their floor, the same for any positive delta)
    seconds = max(0, delta.days * 86400 + delta.seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"
