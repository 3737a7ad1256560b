"""Typosquats and dependency confusion: names that imitate protected or internal ones.

Owns the ``typosquat`` rule (a name that looks like a popular one, an internal
one or one the policy protects, by edits, swapped, repeated or dropped
letters, separators, affixes, confusable characters or npm scope confusion:
the strong tier, refused; and, where the proxy gathered what the project is, a
looser likeness held while the project is young, refused when it starjacks its
target, else allowed and recorded: ``typosquat.tiers``; approved names pass)
and the ``dependency-confusion`` rule (an internal name served from a public
upstream, or a public name that imitates an internal namespace). A name that
is itself popular, protected or explicitly allowed is never flagged. Matching
is ``stockade.policy.typosquat``; the shipped popular lists are in ``data/``.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.approvals import Approval, in_force
from stockade.policy.model import (
    Decision,
    Ecosystem,
    Facts,
    Mode,
    PackageRef,
    ProjectFacts,
    Verdict,
)
from stockade.policy.names import normalize, split_npm
from stockade.policy.rules.base import finding
from stockade.policy.typosquat import Match, NameIndex, skeleton
from stockade.policy.typosquat import summaries as shipped_summaries
from stockade.policy.typosquat import tiers as tiered
from stockade.policy.typosquat.loose import LooseIndex
from stockade.policy.typosquat.store import forget_joined, load_or_build, load_or_build_loose

_CACHE_MAX = 32768  # verdicts kept per ecosystem
_NEITHER: tuple[None, None] = (None, None)  # no strong verdict, no quick likeness


@functools.cache
def popular(ecosystem: Ecosystem) -> tuple[str, ...]:
    """The shipped popular names of ``ecosystem``, most popular first (kept until
    ``release_lists``: a start reads them for the index files' keys, then maps them)."""
    text = resources.files("stockade.policy.data").joinpath(
        f"popular-{ecosystem.value}.txt").read_text(encoding="utf-8")
    # one name a line, and no name holds a space: split at once rather than line by
    # line (a third of the time, on each start)
    return tuple(text.split())


def release_lists() -> None:
    """Let go of the shipped lists' names (some 140,000 strings, 10 MiB in every
    process) once their indexes are built or mapped: the indexes hold them packed.
    Nothing keyed by the lists holds them (``SHIPPED`` stands for them)."""
    popular.cache_clear()
    forget_joined()


# The shipped lists, as the key of the caches below: a key that is the names' tuple
# would hold its 140,000 strings for the life of the process.
SHIPPED = None


def _listed(ecosystem: Ecosystem, names: tuple[str, ...] | None) -> tuple[str, ...]:
    return popular(ecosystem) if names is None else names


def _again(ecosystem: Ecosystem,
           names: tuple[str, ...] | None) -> Callable[[], tuple[str, ...]] | None:
    """The shipped names read anew, where an index of them must be built after all."""
    return functools.partial(popular, ecosystem) if names is None else None


@functools.lru_cache(maxsize=16)
def _index(ecosystem: Ecosystem, protected: tuple[str, ...],
           shipped: tuple[str, ...] | None) -> NameIndex:
    """The shipped names (``SHIPPED``: the shipped lists) with the policy's own ranked
    first: the shipped index built once per process (or read from its file), the
    policy's names in a small one of their own looked up first (``NameIndex.over``),
    so a policy with other names of its own (a reload, a team, a tenant) builds only
    those. Maven's lists are short: built whole."""
    if not protected:
        return _shipped_index(ecosystem, shipped)
    if ecosystem is Ecosystem.MAVEN:
        return NameIndex(ecosystem, _listed(ecosystem, shipped), first=protected)
    return NameIndex.over(_shipped_index(ecosystem, shipped), protected)


@functools.lru_cache(maxsize=8)
def _shipped_index(ecosystem: Ecosystem, shipped: tuple[str, ...] | None) -> NameIndex:
    return load_or_build(ecosystem, _listed(ecosystem, shipped),  # from its file if kept
                         again=_again(ecosystem, shipped))


@dataclass
class TyposquatRule:
    """The ``typosquat`` rule."""

    mode: Mode = Mode.ENFORCE
    protected: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    allowed: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    internal: Mapping[Ecosystem, Sequence[str]] = field(default_factory=dict)
    popular: Mapping[Ecosystem, Sequence[str]] | None = None  # None: the shipped lists
    name: str = "typosquat"
    tiers: tiered.Tiers = field(default_factory=tiered.Tiers)
    approvals: Sequence[Approval] = ()
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

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
        self._loose_indexes: dict[Ecosystem, tuple[LooseIndex, ...]] = {}
        # the quick and the deep loose search, kept apart: each name fills one of each.
        # The deep one is asked where the quick one found nothing: it leaves the quick
        # likenesses out (they would cost a young name's first sight again).
        self._loose_quick = {eco: functools.lru_cache(maxsize=_CACHE_MAX)(
            functools.partial(self._loose_match, eco, deep=False)) for eco in Ecosystem}
        self._loose_deep = {eco: functools.lru_cache(maxsize=_CACHE_MAX)(
            functools.partial(self._loose_match, eco, deep=True, quick=False))
            for eco in Ecosystem}
        # both in one search, index by index (``resembles``, where the policy's own
        # names are an index before the shipped one's: their order holds)
        self._loose_whole = {eco: functools.lru_cache(maxsize=_CACHE_MAX)(
            functools.partial(self._loose_match, eco, deep=True)) for eco in Ecosystem}
        self._approved = {a.key: a for a in self.approvals}
        # The loose tier's verdict of a name, by ecosystem: (the project's facts it was
        # made on, the span of ``now`` over which it stays the same, the verdict). The
        # proxy decides every version of a document on one ``ProjectFacts``.
        self._outcomes: dict[Ecosystem, dict[str, tuple[
            ProjectFacts, datetime, datetime, Verdict | None]]] = {
            eco: {} for eco in Ecosystem}
        # a name's strong verdict and quick likeness, kept together (``_pair``)
        self._pairs = {eco: functools.lru_cache(maxsize=_CACHE_MAX)(
            functools.partial(self._pair, eco)) for eco in Ecosystem}
        # the loose index sharing the strong one's look-ups (the shipped lists, with no
        # names of the policy's own: ``_pair``), with that strong index, by ecosystem
        self._sharing: dict[Ecosystem, tuple[LooseIndex, NameIndex]] = {}
        # the last name the strong tier compared: (ecosystem, name, normalised)
        self._last: tuple[Ecosystem | None, str, str] = (None, "", "")

    def prepare(self) -> None:
        """Build every ecosystem's index now rather than at the first decision."""
        for ecosystem in Ecosystem:
            self.index(ecosystem)
            self.loose_index(ecosystem)
        release_lists()

    def loose_index(self, ecosystem: Ecosystem) -> tuple[LooseIndex, ...]:
        """The loose search: the policy's own names, then the shipped lists (built
        once per process, whatever the policy)."""
        found = self._loose_indexes.get(ecosystem)
        if found is None:
            index = self.index(ecosystem)
            # the shipped names are written normalised (``scripts/build_popular.py``
            # writes them so, and a test holds every shipped name to it)
            shipped = SHIPPED if self.popular is None else tuple(
                normalize(ecosystem, n) for n in self.popular.get(ecosystem, ()))
            extra = tuple(normalize(ecosystem, n) for n in (
                *self.protected.get(ecosystem, ()),
                *(n for n in self.internal.get(ecosystem, ()) if "*" not in n)))
            listed = index.names  # every protected name: never a loose look-alike
            whole = _loose(ecosystem, shipped)
            if self.popular is None:
                # the shipped lists' strong index (``_build``'s, or the base under the
                # policy's own names) files their one-edit neighbours too: the loose
                # tier reads a name's from its look-up (``LooseIndex.share_one_edit``)
                shipped_index = _shipped_index(ecosystem, SHIPPED)
                if whole.share_one_edit(shipped_index.edits) and not extra \
                        and index is shipped_index:
                    # the strong tier's look-up is of the same names: the quick loose
                    # search reads its skeleton too (``_pair``)
                    self._sharing[ecosystem] = (whole, index)
            found = (LooseIndex(ecosystem, extra, listed), whole) if extra else (whole,)
            self._loose_indexes[ecosystem] = found
        return found

    def approval(self, ecosystem: Ecosystem, name: str) -> Approval | None:
        """The approval in force for ``name``, if any."""
        if not self._approved:
            return None
        found = self._approved.get((ecosystem, normalize(ecosystem, name)))
        return found if found is not None and found.in_force(self.now()) else None

    def approvals_in_force(self) -> list[Approval]:
        """The approvals the rule lets through now."""
        return list(in_force(list(self.approvals), self.now()).values())

    def index(self, ecosystem: Ecosystem) -> NameIndex:
        """The protected names of ``ecosystem`` (built once, shared across reloads)."""
        found = self._indexes.get(ecosystem)
        if found is None:
            found = self._indexes[ecosystem] = self._build(ecosystem)
        return found

    def _build(self, ecosystem: Ecosystem) -> NameIndex:
        extra = [*self.protected.get(ecosystem, ()),
                 *(n for n in self.internal.get(ecosystem, ()) if "*" not in n)]
        shipped = SHIPPED if self.popular is None else tuple(self.popular.get(ecosystem, ()))
        return _index(ecosystem, tuple(extra), shipped)

    def _is_allowed(self, ecosystem: Ecosystem, norm: str) -> bool:
        patterns = self._allowed.get(ecosystem)
        if not patterns:  # most policies allow none: no generator made per name
            return False
        return any(fnmatch.fnmatchcase(norm, p) for p in patterns)

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if facts.internal:
            return None  # the organisation's own names are resolved internally
        if self._approved and self.approval(ref.ecosystem, ref.name) is not None:
            return None
        project = facts.project
        if project is None:  # the name alone: the strong tier as it always was
            strong = self._verdicts[ref.ecosystem](ref.name)
            if isinstance(strong, Match):  # borderline: refused unless facts follow
                return None if facts.project_follows else self._refusal(ref.name, strong)
            return strong
        # With facts: the strong look-up and the quick likenesses (at any age) of a name,
        # kept together, so that a version asked again costs one look-up as without them.
        strong, match = self._pairs[ref.ecosystem](ref.name)
        if strong is None:
            if match is None:
                count = project.releases
                if count is not None and count > self.tiers.max_releases:
                    return None  # too many releases to be young: nothing deeper to look for
            return self._loosely(ref, project, match, quick=True)
        if isinstance(strong, Match):  # a borderline strong match: the loose tier's
            return self._loosely(ref, project, strong)
        return self._strong(strong, project)

    def _strong(self, strong: Verdict, project: ProjectFacts) -> Verdict | None:
        """A strong match on its project's facts: refused, unless the facts clear it."""
        if project.first_release is None and \
                self.tiers.strong_on_missing is not Decision.BLOCK:
            decision = self.tiers.strong_on_missing
            return finding(self.name, self.mode,
                           Decision.WARN if decision is Decision.ALLOW else decision,
                           f"{strong.reason} (its age is unknown)", strong.target)
        return strong

    def _loosely(self, ref: PackageRef, project: ProjectFacts,
                 match: Match | None = None, *, quick: bool = False) -> Verdict | None:
        """The loose tier: a look-alike held, refused or recorded on its facts
        (``quick``: the quick likenesses were looked up already, and found ``match``)."""
        eco = ref.ecosystem
        if match is None and not quick:
            match = self._loose_quick[eco](ref.name)  # the quick likenesses, at any age
        if match is None and project.releases is not None and \
                project.releases > self.tiers.max_releases:
            return None  # too many releases to be young: nothing deeper to look for
        now = self.now()
        kept = self._outcomes[eco].get(ref.name)
        if kept is not None and kept[0] is project and kept[1] <= now < kept[2]:
            return kept[3]  # every version of a document asks with the same facts
        if match is None:
            # The costlier likenesses only where they could hold something back.
            is_young = tiered.young(project, now, self.tiers)
            if is_young is False or (is_young is None and
                                     self.tiers.loose_on_missing is Decision.ALLOW):
                return None
            match = self._loose_deep[eco](ref.name)
            if match is None:
                return None
        if tiered.same_owner(eco, ref.name, match.target):
            return None  # the target's own namespace or scope: cleared
        target_print = self._summary_print(eco, match.target) if project.summary else 0
        outcome = tiered.loose(eco, project, match.target, target_print, now, self.tiers)
        if outcome.decision is Decision.ALLOW:
            outcome = tiered.Outcome(Decision.WARN, outcome.why)  # allowed, and recorded
        if outcome.decision is Decision.WARN:
            reason = f'"{ref.name}" resembles "{match.target}" ({match.technique}): ' \
                     f"{outcome.why}"
        else:
            reason = f'"{ref.name}" resembles "{match.target}" and {outcome.why}'
        verdict = finding(self.name, self.mode, outcome.decision, reason, match.target,
                          until=outcome.until)
        window = tiered.unchanged(project, now, self.tiers)
        if window is not None:
            kept_for = self._outcomes[eco]
            if len(kept_for) >= _CACHE_MAX:
                kept_for.clear()
            kept_for[ref.name] = (project, window[0], window[1], verdict)
        return verdict

    def _summary_print(self, ecosystem: Ecosystem, target: str) -> int:
        """The fingerprint of the shipped summary of ``target`` (0: none)."""
        if self.popular is None:  # its place in the shipped list, from the mapped index
            rank = _shipped_index(ecosystem, SHIPPED).names.get(target)
            return shipped_summaries.ranked(ecosystem, rank)
        return shipped_summaries.shipped(ecosystem).get(target, 0)

    def resembles(self, ecosystem: Ecosystem, name: str) -> bool:
        """True when ``name`` is only a loose look-alike: the proxy then gathers the
        facts that compare it with its target (PyPI's summary and repository)."""
        strong = self._verdicts[ecosystem](name)
        match = strong if isinstance(strong, Match) else \
            self._loose_any(ecosystem, name) if strong is None else None
        return match is not None and not tiered.same_owner(ecosystem, name, match.target)

    def _loose_any(self, ecosystem: Ecosystem, name: str) -> Match | None:
        """The quick likenesses, then the deep ones, as one search of every index."""
        if len(self.loose_index(ecosystem)) > 1:
            return self._loose_whole[ecosystem](name)
        return self._loose_quick[ecosystem](name) or self._loose_deep[ecosystem](name)

    def _loose_match(self, ecosystem: Ecosystem, name: str, *, deep: bool,
                     quick: bool = True) -> Match | None:
        norm = normalize(ecosystem, name)
        # An allowed or protected name is never a loose look-alike: asked first of
        # the deep search (costly), and of the quick one only where it found a name
        # (most find none, and the answer is None either way).
        if deep and self._left_alone(ecosystem, norm):
            return None
        for index in self.loose_index(ecosystem):
            if (found := index.match(norm, deep=deep, quick=quick)) is not None:
                return None if not deep and self._left_alone(ecosystem, norm) else found
        return None

    def _pair(self, ecosystem: Ecosystem, name: str) -> tuple[Verdict | Match | None,
                                                               Match | None]:
        """A name's strong verdict and, where it has none, its quick likeness (kept by
        ``_pairs``, by name).

        The quick likenesses are asked here, not through their cache: the pair is what
        is kept of them (a second cache costs a first sight its filling). Where the loose
        index shares the strong one's look-ups and the strong tier has just compared
        ``name`` (a first sight), its normalised name, skeleton and skeleton's holder are
        read, not made again."""
        strong = self._verdicts[ecosystem](name)
        if strong is not None:
            return strong, None
        last = self._last
        sharing = self._sharing.get(ecosystem)
        if sharing is not None and last[1] == name and last[0] is ecosystem \
                and (seen := sharing[1].last)[0] == last[2]:
            match = sharing[0].quick_after(seen)
            if match is not None and self._left_alone(ecosystem, last[2]):
                match = None
        else:
            match = self._loose_match(ecosystem, name, deep=False)
        return _NEITHER if match is None else (None, match)

    def _left_alone(self, ecosystem: Ecosystem, norm: str) -> bool:
        """True for an allowed name, and a protected one itself."""
        return self._is_allowed(ecosystem, norm) or norm in self.index(ecosystem).names

    def clear_cache(self) -> None:
        """Forget the verdicts kept (the indexes stay)."""
        for cached in self._verdicts.values():
            cached.cache_clear()
        for found in (*self._loose_quick.values(), *self._loose_deep.values(),
                      *self._loose_whole.values()):
            found.cache_clear()
        for kept in self._outcomes.values():
            kept.clear()
        for pairs in self._pairs.values():
            pairs.cache_clear()

    def _decide(self, ecosystem: Ecosystem, name: str) -> Verdict | Match | None:
        """A strong match's refusal; the match itself where it is borderline (decided
        in the loose tier: ``tiers.borderline``)."""
        norm = normalize(ecosystem, name)
        self._last = (ecosystem, name, norm)
        if self._is_allowed(ecosystem, norm):
            return None
        index = self.index(ecosystem)
        match = index.lookalike(norm, normalized=True)
        if match is None:
            return None
        if tiered.borderline(ecosystem, match.technique,
                             index.names.get(normalize(ecosystem, match.target))):
            return match
        return self._refusal(name, match)

    def _refusal(self, name: str, match: Match) -> Verdict:
        return finding(self.name, self.mode, Decision.BLOCK,
                       f'"{name}" looks like a typosquat of "{match.target}" '
                       f'({match.technique}); did you mean "{match.target}"?', match.target)


@functools.lru_cache(maxsize=16)
def _loose(ecosystem: Ecosystem, ranked: tuple[str, ...] | None) -> LooseIndex:
    """The loose index of ``ranked`` names (``SHIPPED``: the shipped lists; shared
    across reloads, as the strong one; read from its file if kept)."""
    return load_or_build_loose(ecosystem, _listed(ecosystem, ranked),
                               again=_again(ecosystem, ranked))


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
