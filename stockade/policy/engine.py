"""The policy engine: runs every rule on a reference and keeps the strictest verdict.

Owns combining rule verdicts (block beats warn beats allow; audit-mode hits are
reported but never refuse), explaining them one by one, and deciding every
version of a package at once. It does no I/O; rules are plain values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stockade.policy.model import (
    ALLOWED,
    Decision,
    Ecosystem,
    Facts,
    PackageRef,
    Rule,
    Verdict,
)

# Name decisions kept per ecosystem: about 100,000 for the three, a few tens of MB.
_NAME_CACHE = 32768
_SEVERITY = {Decision.ALLOW: 0, Decision.WARN: 1, Decision.HOLD: 2, Decision.BLOCK: 3}


class Engine:
    """A fixed set of rules under one revision."""

    def __init__(self, rules: Sequence[Rule], *, revision: str,
                 sources: Sequence[Path] = (), provenance: Rule | None = None) -> None:
        self._rules = tuple(rules)
        # the policy's provenance rule (also among ``rules``): the proxy reads which
        # checks it asks for and the trust material it names
        self.provenance = provenance
        self._revision = revision
        self.sources = tuple(sources)  # files the rules were read from (besides the policy)
        # Name-level decisions repeat for every request of a package: keep them.
        # By ecosystem: keys of plain values, which the collector stops walking.
        self._names = {eco: _Recent(_NAME_CACHE) for eco in Ecosystem}
        # each team's engine: these rules plus the team's (``stockade.policy.teams``)
        self.teams: dict[str, Engine] = {}

    def for_team(self, team: str | None) -> Engine:
        """The engine that decides for ``team``: its own, or this one for no team or a
        team the policy does not name."""
        if team is None:
            return self
        return self.teams.get(team, self)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

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
        if ref.version is not None or facts.project is not None:
            # a project's facts make a decision that changes with time (a hold lifts)
            return self._decide(ref, facts)
        # plain fields: a frozen dataclass hashes itself in Python on every look-up
        cache = self._names[ref.ecosystem]
        key = (ref.name, ref.filename, facts.upstream, facts.internal)
        found: Verdict | None = cache.get(key)
        if found is None:
            found = self._decide(ref, facts)
            cache.put(key, found)
        return found

    def clear_cache(self) -> None:
        """Forget the decisions kept, the engine's and its rules'."""
        for cache in self._names.values():
            cache.clear()
        for rule in self._rules:
            clear = getattr(rule, "clear_cache", None)
            if callable(clear):
                clear()

    def _decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        # The severity kept as a number: no look-up of the best verdict's severity per
        # verdict, and no attribute of the Decision class per decision (an enum member
        # is read through its class's metaclass in Python, some 0.1 us a read).
        best = ALLOWED
        severity = 0
        audit: Verdict | None = None
        for rule in self._rules:
            verdict = rule.evaluate(ref, facts)
            if verdict is None:
                continue
            if verdict.audit_only:
                audit = audit or verdict
            elif (found := _SEVERITY[verdict.decision]) > severity:
                best, severity = verdict, found
        if severity == 0 and audit is not None:
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


class _Recent:
    """A bounded map of recent entries: two generations of plain dicts. When the newer
    holds half the bound, it becomes the older and the oldest is dropped whole; an
    entry found in the older moves to the newer. Unlike an OrderedDict kept in LRU
    order, a first sight costs one dict store, not a linked-list update and an
    eviction. Values are never None: None is what ``get`` answers for a miss."""

    __slots__ = ("_half", "_new", "_old")

    def __init__(self, size: int) -> None:
        self._half = max(1, size // 2)
        self._new: dict[Any, Any] = {}
        self._old: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        found = self._new.get(key)
        if found is None and self._old:
            found = self._old.pop(key, None)
            if found is not None:
                self.put(key, found)
        return found

    def put(self, key: Any, value: Any) -> None:
        if len(self._new) >= self._half:
            self._old, self._new = self._new, {}
        self._new[key] = value

    def clear(self) -> None:
        self._new.clear()
        self._old.clear()

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


def build_engine(
    policy: Any | None = None,
    *,
    internal: Mapping[Ecosystem, Sequence[str]] | None = None,
) -> Engine:
    """The engine for a parsed policy; None gives the built-in default policy.

    The built-in default protects against typosquats of popular names and
    dependency confusion with the internal namespaces; nothing else is refused.
    """
    if policy is None:
        from stockade.policy.file import default_policy

        policy = default_policy({e: tuple(ns) for e, ns in (internal or {}).items()})
    rules: list[Rule] = list(getattr(policy, "rules", ()) or ())
    for rule in rules:
        prepare = getattr(rule, "prepare", None)
        if callable(prepare):
            prepare()  # large indexes are built here, off the request path
    material = repr((getattr(policy, "revision", ""),
                     sorted((e.value, tuple(ns)) for e, ns in (internal or {}).items()),
                     [r.name for r in rules]))
    engine = Engine(rules, revision=hashlib.sha256(material.encode()).hexdigest()[:12],
                    sources=(*getattr(policy, "osv_paths", ()),
                             *getattr(getattr(policy, "provenance", None), "trust_files", ()),
                             *([a] if (a := getattr(policy, "approvals", None)) else [])),
                    provenance=getattr(policy, "provenance", None))
    # Built once per policy revision, so no request builds an engine.
    for team, extra in (getattr(policy, "teams", None) or {}).items():
        engine.teams[team] = Engine((*rules, *extra), revision=f"{engine.revision}.{team}",
                                    sources=engine.sources, provenance=engine.provenance)
    return engine
