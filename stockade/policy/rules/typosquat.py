"""Typosquats and dependency confusion: names that imitate protected or internal ones.

Owns the ``typosquat`` rule (a name that looks like a popular one, an internal
one or one the policy protects, by edits, swapped, repeated or dropped
letters, separators, affixes, confusable characters or npm scope confusion)
and the ``dependency-confusion`` rule (an internal name served from a public
upstream, or a public name that imitates an internal namespace). A name that
is itself popular, protected or explicitly allowed is never flagged. Matching
is ``stockade.policy.typosquat``; the shipped popular lists are in ``data/``.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.model import Decision, Ecosystem, Facts, Mode, PackageRef, Verdict
from stockade.policy.names import normalize, split_npm
from stockade.policy.rules.base import finding
from stockade.policy.typosquat import NameIndex, skeleton
from stockade.policy.typosquat.store import load_or_build

_CACHE_MAX = 32768  # verdicts kept per ecosystem


@functools.cache
def popular(ecosystem: Ecosystem) -> tuple[str, ...]:
    """The shipped popular names of ``ecosystem``, most popular first."""
    text = resources.files("stockade.policy.data").joinpath(
        f"popular-{ecosystem.value}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@functools.lru_cache(maxsize=16)
def _index(ecosystem: Ecosystem, protected: tuple[str, ...],
           shipped: tuple[str, ...]) -> NameIndex:
    return load_or_build(ecosystem, shipped, first=protected)  # from its file if kept


@dataclass
class TyposquatRule:
    """The ``typosquat`` rule."""

    mode: Mode = Mode.ENFORCE
    protected: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    allowed: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    internal: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    popular: Mapping[Ecosystem, Sequence[str]] | None = None  # None: the shipped lists
    name: str = "typosquat"

    def __post_init__(self) -> None:
        self._allowed = {
            eco: [normalize(eco, n) for n in names] for eco, names in self.allowed.items()
        }
        # Every version of a package asks again: keep the verdicts, by ecosystem (an
        # LRU in C, keyed by the name alone: as cheap as a dict on a first sight, and
        # nothing the collector must walk).
        self._verdicts = {eco: functools.lru_cache(maxsize=_CACHE_MAX)(
            functools.partial(self._decide, eco)) for eco in Ecosystem}
        self._indexes: dict[Ecosystem, NameIndex] = {}

    def prepare(self) -> None:
        """Build every ecosystem's index now rather than at the first decision."""
        for ecosystem in Ecosystem:
            self.index(ecosystem)

    def index(self, ecosystem: Ecosystem) -> NameIndex:
        """The protected names of ``ecosystem`` (built once, shared across reloads)."""
        found = self._indexes.get(ecosystem)
        if found is None:
            found = self._indexes[ecosystem] = self._build(ecosystem)
        return found

    def _build(self, ecosystem: Ecosystem) -> NameIndex:
        extra = [*self.protected.get(ecosystem, ()),
                 *(n for n in self.internal.get(ecosystem, ()) if "*" not in n)]
        shipped = tuple(popular(ecosystem)) if self.popular is None else tuple(
            self.popular.get(ecosystem, ()))
        return _index(ecosystem, tuple(extra), shipped)

    def _is_allowed(self, ecosystem: Ecosystem, norm: str) -> bool:
        patterns = self._allowed.get(ecosystem) or ()
        return any(fnmatch.fnmatchcase(norm, p) for p in patterns)

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if facts.internal:
            return None  # the organisation's own names are resolved internally
        return self._verdicts[ref.ecosystem](ref.name)

    def clear_cache(self) -> None:
        """Forget the verdicts kept (the indexes stay)."""
        for cached in self._verdicts.values():
            cached.cache_clear()

    def _decide(self, ecosystem: Ecosystem, name: str) -> Verdict | None:
        norm = normalize(ecosystem, name)
        if self._is_allowed(ecosystem, norm):
            return None
        match = self.index(ecosystem).lookalike(norm, normalized=True)
        if match is None:
            return None
        return finding(self.name, self.mode, Decision.BLOCK,
                       f'"{name}" looks like a typosquat of "{match.target}" '
                       f"({match.technique})", match.target)


def _stem(ecosystem: Ecosystem, pattern: str) -> str | None:
    """The namespace a wildcard pattern protects: ``acme`` of ``acme-*`` or ``@acme/*``."""
    if "*" not in pattern:
        return None
    head = pattern.split("*", 1)[0]
    if ecosystem is Ecosystem.NPM:
        scope, _ = split_npm(head)
        head = scope if scope is not None else head
    head = skeleton(ecosystem, head)
    return head if len(head) >= 3 else None


@dataclass
class DependencyConfusionRule:
    """The ``dependency-confusion`` rule."""

    internal: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    allowed: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    mode: Mode = Mode.ENFORCE
    name: str = "dependency-confusion"

    def __post_init__(self) -> None:
        self._patterns = {  # only ecosystems with internal names: the rest skip at once
            eco: [normalize(eco, p) for p in pats] for eco, pats in self.internal.items() if pats
        }
        self._stems = {
            eco: {s: p for p in pats if (s := _stem(eco, p)) is not None}
            for eco, pats in self._patterns.items()
        }
        self._allowed = {eco: {normalize(eco, n) for n in names}
                         for eco, names in self.allowed.items()}

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        eco = ref.ecosystem
        if facts.internal or eco not in self._patterns:
            return None  # no internal names of that ecosystem: nothing to confuse
        norm = normalize(eco, ref.name)
        if norm in self._allowed.get(eco, set()):
            return None
        for pattern in self._patterns.get(eco, ()):
            if fnmatch.fnmatchcase(norm, pattern):
                source = f"public upstream {facts.upstream}" if facts.upstream else \
                    "a public upstream"
                return finding(self.name, self.mode, Decision.BLOCK,
                               f'"{ref.name}" is an internal name ({pattern}) but would come '
                               f"from {source}", pattern)
        imitated = self._imitates(eco, norm)
        if imitated is None:
            return None
        return finding(self.name, self.mode, Decision.BLOCK,
                       f'"{ref.name}" imitates the internal namespace {imitated}', imitated)

    def _imitates(self, eco: Ecosystem, norm: str) -> str | None:
        stems = self._stems.get(eco)
        if not stems:
            return None
        if eco is Ecosystem.NPM:
            scope, bare = split_npm(norm)
            heads = [skeleton(eco, scope)] if scope is not None else []
            first = bare.replace("_", "-").replace(".", "-").split("-", 1)[0]
            heads.append(skeleton(eco, first))
            whole = skeleton(eco, bare)
        else:
            group = norm.split(":", 1)[0] if eco is Ecosystem.MAVEN else norm
            first = group.split("-", 1)[0] if eco is Ecosystem.PYPI else group
            heads = [skeleton(eco, first)]
            whole = skeleton(eco, group)
        for stem, pattern in stems.items():
            folded = stem.replace("rn", "m")
            for head in heads:
                h = head.replace("rn", "m")
                if h == folded or (len(folded) >= 4 and DamerauLevenshtein.distance(
                        h, folded, score_cutoff=1) <= 1):
                    return pattern
            if len(stem) >= 4 and whole.replace("rn", "m").startswith(folded):
                return pattern
        return None
