"""Allow and deny lists, with owners, reasons, expiry dates and tags.

Owns the ``lists`` rule: a deny entry refuses what it names; an allowlist-only
mode refuses any name without an allow entry carrying the required tags (so a
production build uses only packages the organisation reviewed). Expired entries
stop applying and are reported by ``expired()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from stockade.policy.model import Decision, Ecosystem, Facts, Mode, PackageRef, Verdict
from stockade.policy.rules.base import Entry, finding


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One allow or deny entry as the policy file states it."""

    entry: Entry
    reason: str
    owner: str = ""
    expires: date | None = None
    tags: frozenset[str] = frozenset()

    def active(self, today: date) -> bool:
        return self.expires is None or today <= self.expires

    def describe(self) -> str:
        versions = f" {self.entry.versions.text}" if self.entry.versions else ""
        return f"{self.entry.ecosystem.value}:{self.entry.pattern}{versions}"


@dataclass(frozen=True, slots=True)
class AllowlistOnly:
    """Admit only names with an allow entry carrying every required tag."""

    enabled: bool = False
    required_tags: frozenset[str] = frozenset()
    ecosystems: frozenset[Ecosystem] = frozenset(Ecosystem)


@dataclass
class ListsRule:
    """The ``lists`` rule."""

    allow: Sequence[ListEntry] = ()
    deny: Sequence[ListEntry] = ()
    allowlist_only: AllowlistOnly = field(default_factory=AllowlistOnly)
    mode: Mode = Mode.ENFORCE
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    name: str = "lists"

    def expired(self) -> list[ListEntry]:
        """Entries past their expiry date (no longer applied)."""
        today = self.now().date()
        return [e for e in (*self.allow, *self.deny) if not e.active(today)]

    def allowed_names(self) -> dict[Ecosystem, list[str]]:
        """Names of active allow entries, per ecosystem (other rules never flag them)."""
        today = self.now().date()
        out: dict[Ecosystem, list[str]] = {}
        for e in self.allow:
            if e.active(today):
                out.setdefault(e.entry.ecosystem, []).append(e.entry.pattern)
        return out

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        today = self.now().date()
        for entry in self.deny:
            if entry.active(today) and entry.entry.matches(ref):
                owner = f" (owner {entry.owner})" if entry.owner else ""
                return finding(self.name, self.mode, Decision.BLOCK,
                               f'"{ref.display()}" is on the deny list: {entry.reason}{owner}')
        gate = self.allowlist_only
        if not gate.enabled or ref.ecosystem not in gate.ecosystems or facts.internal:
            return None
        for entry in self.allow:
            if (entry.active(today) and gate.required_tags <= entry.tags
                    and entry.entry.matches_name(ref)
                    and (entry.entry.versions is None or ref.version is None
                         or entry.entry.versions.contains(ref.version))):
                return None
        tags = ", ".join(sorted(gate.required_tags)) or "any"
        return finding(self.name, self.mode, Decision.BLOCK,
                       f'"{ref.display()}" is not on the allowlist of reviewed packages '
                       f"(tags required: {tags})")
