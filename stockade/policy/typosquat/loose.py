"""The loose search: names that resemble a protected one too loosely to refuse on the
name alone, indexed so that a look-up takes microseconds.

Owns the looser likenesses the facts of a project then clear or convict
(``rules.typosquat``): the same skeleton at any rank (a flattened npm scope, a
separator variant of a less installed name), one edit of any protected name of
``ONE_EDIT_MIN`` letters or more (a deletion-set index), a version suffix
(``requests-2``, ``lodash-4.17``), and, in the deep search that runs only where the
facts say a project is young: two edits of a long name among the most installed
(buckets by length and the first or last two letters), a high rapidfuzz ratio,
and a most installed name contained with an affix (an Aho-Corasick automaton).
Names are compared as the detector's skeletons. A name that is itself listed is
never a loose look-alike. Pure; the corpus is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import ahocorasick
from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.compare import Match, technique_of
from stockade.policy.typosquat.forms import deletions, skeleton

ONE_EDIT_MIN = 5  # letters a protected name needs for one edit of it to resemble it
ONE_EDIT_RANK = 20_000  # how far down the list one edit is indexed (memory: deletions)
TWO_EDITS_MIN = 8  # letters for two edits to resemble
TWO_EDITS_RANK = 20_000
RATIO_RANK = 1_000
RATIO_MIN = 85.0
CONTAINED_RANK = 1_000
CONTAINED_MIN = 4
_SUFFIX = re.compile(r"^(.+?)[-_.]?v?\d+(?:[-_.]\d+)*$")


class LooseIndex:
    """The ranked protected names of one ecosystem, for the loose search."""

    def __init__(self, ecosystem: Ecosystem, names: Sequence[str],
                 listed: Collection[str] = ()) -> None:
        """``names`` normalised, most installed first; ``listed``: names never flagged
        (the shipped lists and the policy's own)."""
        self.ecosystem = ecosystem
        self._listed = listed
        self._names: dict[str, str] = {}  # skeleton -> best-ranked name
        self._ranks: dict[str, int] = {}  # skeleton -> its best rank
        self._one: dict[str, list[str]] = {}  # deletion -> skeletons
        # long skeletons by their first and by their last two letters, and length:
        # two edits of a long name nearly always leave one end whole, and each list
        # is short
        self._ends: dict[str, list[str]] = {}
        self._top: list[str] = []  # skeletons for the ratio
        self._contained = ahocorasick.Automaton()
        for rank, name in enumerate(names):
            skel = skeleton(ecosystem, name)
            if not skel or skel in self._names:
                continue
            self._names[skel] = name
            self._ranks[skel] = rank
            if len(skel) >= ONE_EDIT_MIN and rank < ONE_EDIT_RANK:
                for key in deletions(skel):
                    self._one.setdefault(key, []).append(skel)
            if len(skel) >= TWO_EDITS_MIN and rank < TWO_EDITS_RANK:
                self._ends.setdefault(f"^{skel[:2]}{len(skel)}", []).append(skel)
                self._ends.setdefault(f"{skel[-2:]}${len(skel)}", []).append(skel)
            if rank < RATIO_RANK:
                self._top.append(skel)
            if rank < CONTAINED_RANK and len(skel) >= CONTAINED_MIN:
                self._contained.add_word(skel, skel)
        if len(self._contained):
            self._contained.make_automaton()

    def match(self, norm: str, *, deep: bool) -> Match | None:
        """The protected name the normalised ``norm`` loosely resembles, if any; the
        costlier likenesses only where ``deep``."""
        if norm in self._listed:
            return None
        skel = skeleton(self.ecosystem, norm)
        if not skel:
            return None
        found = self._same(norm, skel) or self._suffix(skel, norm) or self._one_edit(skel)
        if found is None and deep:
            found = self._two_edits(skel) or self._ratio(skel) or self._within(skel)
        return found

    def _target(self, skel: str) -> str:
        return self._names[skel]

    def _same(self, norm: str, skel: str) -> Match | None:
        target = self._names.get(skel)
        if target is None or target == norm:
            return None
        scoped = self.ecosystem is Ecosystem.NPM and ("/" in norm) != ("/" in target)
        return Match(target, "flattened scope" if scoped else "separator variant")

    def _one_edit(self, skel: str) -> Match | None:
        best: str | None = None
        for key in deletions(skel):
            for other in self._one.get(key, ()):
                if other != skel and (best is None or self._rank(other) < self._rank(best)) \
                        and DamerauLevenshtein.distance(skel, other, score_cutoff=1) <= 1:
                    best = other
        return None if best is None else Match(self._target(best), technique_of(skel, best))

    def _rank(self, skel: str) -> int:
        return self._ranks[skel]

    def _suffix(self, skel: str, norm: str) -> Match | None:
        found = _SUFFIX.match(norm)
        if found is None:
            return None
        base = skeleton(self.ecosystem, found.group(1))
        target = self._names.get(base)
        if target is None or len(base) < 3 or base == skel:
            return None
        return Match(target, "version suffix")

    def _two_edits(self, skel: str) -> Match | None:
        if len(skel) < TWO_EDITS_MIN - 2:
            return None
        head, tail = skel[:2], skel[-2:]
        candidates = [other for n in range(len(skel) - 2, len(skel) + 3)
                      for end in (f"^{head}{n}", f"{tail}${n}")
                      for other in self._ends.get(end, ())]
        hit = process.extractOne(skel, candidates, scorer=DamerauLevenshtein.distance,
                                 score_cutoff=2) if candidates else None
        if hit is not None and hit[0] != skel:
            return Match(self._target(hit[0]), technique_of(skel, hit[0]))
        return None

    def _ratio(self, skel: str) -> Match | None:
        hit = process.extractOne(skel, self._top, scorer=fuzz.ratio, score_cutoff=RATIO_MIN)
        if hit is None or hit[0] == skel:
            return None
        return Match(self._target(hit[0]), f"similar spelling ({hit[1]:.0f}%)")

    def _within(self, skel: str) -> Match | None:
        if not len(self._contained):
            return None
        best: str | None = None
        for _, inner in self._contained.iter(skel):
            if inner != skel and (best is None or len(inner) > len(best)):
                best = inner
        return None if best is None else Match(self._target(best), "contains it with an affix")
