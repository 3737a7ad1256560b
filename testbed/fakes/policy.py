"""A policy engine for proxy tests: blocks exactly the names and versions it is told."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stockade.policy.model import ALLOWED, Decision, Facts, PackageRef, Verdict


@dataclass
class FakeEngine:
    """Blocks ``blocked_names`` (rule deny-list) and ``blocked_versions`` (rule age);
    ``audited_versions`` are refused in audit mode (rule osv: recorded, let through)."""

    blocked_names: set[str] = field(default_factory=set)
    blocked_versions: set[tuple[str, str]] = field(default_factory=set)
    audited_versions: set[tuple[str, str]] = field(default_factory=set)
    revision: str = "fake-1"
    calls: list[PackageRef] = field(default_factory=list)

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        self.calls.append(ref)
        if ref.name in self.blocked_names:
            return Verdict(Decision.BLOCK, "deny-list", f"{ref.name} is on the deny list")
        if ref.version is not None and (ref.name, ref.version) in self.blocked_versions:
            return Verdict(Decision.BLOCK, "age", f"{ref.display()} is younger than 7 days")
        if ref.version is not None and (ref.name, ref.version) in self.audited_versions:
            return Verdict(Decision.BLOCK, "osv", f"{ref.display()} has a known vulnerability",
                           audit_only=True)
        return ALLOWED

    def explain(self, ref: PackageRef, facts: Facts) -> list[Verdict]:
        return [self.decide(ref, facts)]

    def filter_versions(
        self, name: PackageRef, versions: Mapping[str, Facts]
    ) -> dict[str, Verdict]:
        return {
            v: self.decide(PackageRef(name.ecosystem, name.name, v), f)
            for v, f in versions.items()
        }
