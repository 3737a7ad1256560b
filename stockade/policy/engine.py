"""The policy engine: runs every rule on a reference and keeps the strictest verdict.

Owns combining rule verdicts (block beats warn beats allow; audit-mode hits are
reported but never refuse), explaining them one by one, and deciding every
version of a package at once. It does no I/O; rules are plain values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from stockade.policy.model import ALLOWED, Decision, Ecosystem, Facts, PackageRef, Verdict

_SEVERITY = {Decision.ALLOW: 0, Decision.WARN: 1, Decision.BLOCK: 2}


class Rule(Protocol):
    """One policy rule: a verdict when it applies, None when it has nothing to say."""

    name: str

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None: ...


class Engine:
    """A fixed set of rules under one revision."""

    def __init__(self, rules: Sequence[Rule], *, revision: str) -> None:
        self._rules = tuple(rules)
        self._revision = revision

    @property
    def revision(self) -> str:
        return self._revision

    def explain(self, ref: PackageRef, facts: Facts) -> list[Verdict]:
        """Every rule's verdict, in rule order (allow verdicts included)."""
        out = []
        for rule in self._rules:
            verdict = rule.evaluate(ref, facts)
            out.append(verdict or Verdict(Decision.ALLOW, rule.name, "does not apply"))
        return out

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        """The effective verdict: the most severe enforced one, else the first audit hit."""
        best = ALLOWED
        audit: Verdict | None = None
        for verdict in self.explain(ref, facts):
            if verdict.audit_only:
                audit = audit or verdict
            elif _SEVERITY[verdict.decision] > _SEVERITY[best.decision]:
                best = verdict
        if best.decision is Decision.ALLOW and audit is not None:
            return audit
        return best

    def filter_versions(
        self, name: PackageRef, versions: Mapping[str, Facts]
    ) -> dict[str, Verdict]:
        """The verdict for each version of ``name``."""
        return {
            version: self.decide(
                PackageRef(name.ecosystem, name.name, version, name.filename), facts
            )
            for version, facts in versions.items()
        }


def build_engine(
    policy: Any | None = None,
    *,
    internal: Mapping[Ecosystem, Sequence[str]] | None = None,
    osv: Any | None = None,
) -> Engine:
    """The engine for a parsed policy; None gives the built-in default policy.

    The built-in default has no rules yet: every name is allowed.
    """
    rules: list[Rule] = list(getattr(policy, "rules", ()) or ())
    material = repr((sorted((e.value, tuple(ns)) for e, ns in (internal or {}).items()),
                     [r.name for r in rules]))
    return Engine(rules, revision=hashlib.sha256(material.encode()).hexdigest()[:12])
