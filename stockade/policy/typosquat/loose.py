"""The loose search: names that resemble a protected one too loosely to refuse on the
name alone, indexed so that a look-up takes microseconds.

Owns the looser likenesses the facts of a project then clear or convict
(``rules.typosquat``): the same skeleton at any rank (a flattened npm scope, a
separator variant of a less installed name), one edit of any protected name of
``ONE_EDIT_MIN`` letters or more (a deletion-set index), a version suffix
(``requests-2``, ``lodash-4.17``), and, in the deep search that runs only where the
facts say a project is young, the shapes of ``SHAPES`` per ecosystem: two edits of a
long name among the most installed (buckets by length and the first or last two
letters), a high rapidfuzz ratio (buckets by length and an end or both; a shorter
name than the protected one, letters dropped), the same letters reordered, a
word left out, a protected name contained with an affix, limited by its length,
its rank, the affix's length and where it sits among the words (``contained``: an
Aho-Corasick automaton finds them in one pass), a typist's slip of a listed name
beyond the one-edit index's rank (the slips made and looked up in the skeleton
table), two of the most installed names run together with a plural dropped, and a
marker or a version digit dropped or added (``markers``).
Names are compared as the detector's skeletons. A name that is itself listed is
never a loose look-alike. Pure; the corpus is passed in.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.compare import Match, technique_of
from stockade.policy.typosquat.contained import Contained, ContainedSearch
from stockade.policy.typosquat.edits import EditIndex
from stockade.policy.typosquat.forms import deletions, skeleton
from stockade.policy.typosquat.letters import LetterBound
from stockade.policy.typosquat.limits import EDIT_MAX_RANK, MIN_FUZZY, NEIGHBOURS
from stockade.policy.typosquat.markers import Marked, Versioned
from stockade.policy.typosquat.packed import Lists, Ranks, Strings

ONE_EDIT_MIN = 5  # letters a protected name needs for one edit of it to resemble it
ONE_EDIT_RANK = 20_000  # how far down the list one edit is indexed (memory: deletions)
TWO_EDITS_MIN = 8  # letters for two edits to resemble
TWO_EDITS_RANK = 20_000
ANY_RANK = 10**9
_SUFFIX = re.compile(r"^(.+?)[-_.]?v?\d+(?:[-_.]\d+)*$")
_WORDS = re.compile(r"[-_.@/:\s]+")
_KEYS = {ch: tuple(sorted(keys)) for ch, keys in NEIGHBOURS.items()}  # in a fixed order
# Buckets of fewer names than this together are searched whole: the letter bound
# (``letters``) costs about as much as rapidfuzz there.
BOUND_LEAST = 24
_BOUNDS_MAX = 4096  # letter bounds kept per index (emptied when full: bounded memory)
# A letter bound holds the buckets of one end of this many letters at most (longer
# names are searched bucket by bucket, whole)
BOUND_LONGEST = 80
@dataclass(frozen=True, slots=True)
class Ratio:
    """A rapidfuzz ratio of at least ``cutoff`` with a protected name of ``min_len``
    letters or more among the ``max_rank`` most installed."""

    min_len: int
    max_rank: int
    cutoff: float
    ends: bool = False  # only names sharing the first or the last letter (a look-up
    #                     among thousands of long names is then some ten times as fast)
    # the fewest letters of a name looked up (0: ``min_len``): a shorter one is the
    # protected name with letters dropped (``wb3cor`` for ``web3-core``)
    shortest: int = 0
    # only names sharing both the first two letters and the last, npm scopes left out
    # on both sides (a long scoped name is mostly its scope's words): for a row
    # reaching every listed name
    both_ends: bool = False


@dataclass(frozen=True, slots=True)
class Shapes:
    """The deep likenesses of one ecosystem (tuned on half the labelled squats, each
    kept only where it held few lesser-known young names: ``bench.typosquat_facts``)."""

    two_edits: bool = True
    ratios: tuple[Ratio, ...] = (Ratio(0, 1_000, 85.0),)
    contained: tuple[Contained, ...] = (Contained(4, 1_000, ANY_RANK, "anywhere"),)
    anagram_rank: int = 0  # the same letters reordered (``matlibplot``); 0: off
    anagram_min: int = 7
    dropped_word: bool = False  # one word of four letters or more left out of a name
    #                             of three words or more (``puppeteer-extra-stealth``)
    # a typist's slip inside a name of ``slip_min`` letters or more, its first and last
    # letters kept (a neighbouring key for a letter, or one letter added: ``umbrellaks``,
    # ``xigplayer``), of a listed name beyond the one-edit index's rank (nearer ones
    # take any edit there); 0: off. Looked up in the skeleton table: no table of its own.
    slip_min: int = 0
    # two of the ``joined_rank`` most installed names run together, each of
    # ``joined_min`` letters or more, one of them with its plural ``s`` dropped
    # (``pandarequest``); 0: off. Looked up in the skeleton table: no table of its own.
    joined_rank: int = 0
    joined_min: int = 5
    # an ecosystem marker taken off a protected name among the ``marker_rank`` most
    # installed (``smb`` for ``pysmb``), or a marker around one and a version suffix
    # after (``liblxml3``): ``markers``. Looked up in a dict of the few protected
    # names that carry one (``markers``).
    markers: tuple[str, ...] = ()
    marker_rank: int = 0
    # a version digit dropped from a listed name at any rank (``smb`` for ``smb2``;
    # the strong tier takes the most installed only): ``markers.Versioned``
    version_dropped: bool = False


SHAPES = {
    Ecosystem.PYPI: Shapes(
        two_edits=True,
        ratios=(Ratio(0, 1_000, 85.0), Ratio(8, 20_000, 85.0, ends=True)),
        contained=(Contained(6, 1_000, ANY_RANK, "anywhere"),
                   Contained(5, 1_000, ANY_RANK, "one edge"),
                   Contained(7, 20_000, 5, "one edge")),
        anagram_rank=20_000,
        joined_rank=1_000,
        markers=("python3", "python", "py3", "py", "lib"),
        marker_rank=20_000),
    Ecosystem.NPM: Shapes(
        two_edits=False,
        ratios=(Ratio(8, 20_000, 80.0, ends=True, shortest=6),
                Ratio(14, ANY_RANK, 85.0, shortest=11, both_ends=True)),
        contained=(Contained(4, 1_000, ANY_RANK, "one edge"),
                   Contained(6, ANY_RANK, 4, "one edge"),
                   Contained(7, 20_000, 6, "not whole words")),
        dropped_word=True,
        slip_min=8,
        joined_rank=1_000,
        version_dropped=True),
    Ecosystem.MAVEN: Shapes(),
}


class LooseIndex:
    """The ranked protected names of one ecosystem, for the loose search."""

    def __init__(self, ecosystem: Ecosystem, names: Sequence[str],
                 listed: Collection[str] = (), shapes: Shapes | None = None) -> None:
        """``names`` normalised, most installed first; ``listed``: names never flagged
        (the shipped lists and the policy's own)."""
        self.ecosystem = ecosystem
        self.shapes = shape = SHAPES[ecosystem] if shapes is None else shapes
        self._listed = listed
        names_: dict[str, str] = {}  # skeleton -> best-ranked name
        ranks: dict[str, int] = {}  # skeleton -> its best rank
        one: dict[str, list[str]] = {}  # deletion -> skeletons
        # long skeletons by their first and by their last two letters, and length:
        # two edits of a long name nearly always leave one end whole, and each list
        # is short
        ends: dict[str, list[str]] = {}
        # per ratio row: skeletons by length (a ratio bounds the length difference),
        # and, for a row that keeps an end, by the first and by the last letter too
        ratios: dict[str, list[str]] = {}  # keyed by ``_bucket``
        anagrams: dict[str, str] = {}  # sorted letters -> skeleton
        dropped: dict[str, str] = {}  # skeleton less one word -> skeleton
        self._longest = 0  # the longest skeleton a contained row may find
        reach = max((c.max_rank for c in shape.contained), default=0)
        least = min((c.min_len for c in shape.contained), default=ANY_RANK)
        for rank, name in enumerate(names):
            skel = skeleton(ecosystem, name)
            if not skel or skel in names_:
                continue
            names_[skel] = name
            ranks[skel] = rank
            if len(skel) >= ONE_EDIT_MIN and rank < ONE_EDIT_RANK:
                for key in deletions(skel):
                    one.setdefault(key, []).append(skel)
            if shape.two_edits and len(skel) >= TWO_EDITS_MIN and rank < TWO_EDITS_RANK:
                ends.setdefault(f"^{skel[:2]}{len(skel)}", []).append(skel)
                ends.setdefault(f"{skel[-2:]}${len(skel)}", []).append(skel)
            for at, row in enumerate(shape.ratios):
                if rank < row.max_rank and len(skel) >= row.min_len:
                    if row.both_ends:
                        if not name.startswith("@"):
                            ratios.setdefault(_bucket(at, len(skel), _both(skel)),
                                              []).append(skel)
                    elif row.ends:
                        ratios.setdefault(_bucket(at, len(skel), f"^{skel[0]}"),
                                          []).append(skel)
                        ratios.setdefault(_bucket(at, len(skel), f"{skel[-1]}$"),
                                          []).append(skel)
                    else:
                        ratios.setdefault(_bucket(at, len(skel), ""), []).append(skel)
            if rank < shape.anagram_rank and len(skel) >= shape.anagram_min:
                anagrams.setdefault("".join(sorted(skel)), skel)
            if shape.dropped_word:
                parts = [skeleton(ecosystem, w) for w in _WORDS.split(name) if w]
                if len(parts) >= 3:
                    for i, part in enumerate(parts):
                        if len(part) >= 4:
                            dropped.setdefault("".join(parts[:i] + parts[i + 1:]), skel)
            if rank < reach and len(skel) >= least:
                self._longest = max(self._longest, len(skel))
        # The tables packed (``packed``): a few bytes a key where a dict of str costs
        # about a hundred, and what an index file maps as it is (``store``). A list of
        # skeletons is a tuple of them, decoded when its key is first looked up.
        self._names: Mapping[str, str] = Strings(Strings.pack(names_.items()))
        self._ranks = Ranks(Ranks.pack(ranks.items()))
        self._one = Lists(Lists.pack((k, tuple(v)) for k, v in one.items()))
        self._ends = Lists(Lists.pack((k, tuple(v)) for k, v in ends.items()))
        self._ratios = Lists(Lists.pack((k, tuple(v)) for k, v in ratios.items()))
        self._anagrams: Mapping[str, str] = Strings(Strings.pack(anagrams.items()))
        self._dropped: Mapping[str, str] = Strings(Strings.pack(dropped.items()))
        # the letter bounds of the buckets (``_bound``): derived, never kept in a file
        self._bounds: dict[tuple[int | None, str], LetterBound | None] = {}
        # the contained search, its rows' names in an automaton (``contained``):
        # derived, never kept
        self._contained: ContainedSearch | None = None
        # the ``joined_rank`` most installed, by skeleton (``_run_together``): derived
        self._joined: dict[str, int] | None = None
        # the protected names that carry a marker, by their cores (``_marker``): derived
        self._marked: Marked | None = None
        self._versioned: Versioned | None = None  # ... with a version digit: derived
        # the strong index's edit look-ups, where they hold the same one-edit
        # neighbours as ``_one`` (``share_one_edit``): never kept
        self._shared: EditIndex | None = None

    def share_one_edit(self, edits: EditIndex) -> bool:
        """Read one edit's neighbours from ``edits`` (the strong index of the same
        ranked names, unlayered) rather than ``_one``: the strong tier has just looked
        up the deletions of the name the loose tier asks for, and its answer is kept
        (``EditIndex.neighbours``), so a name's first sight probes one table, not two.
        Only where both file the same names (their ranks and lengths alike); True when
        shared."""
        if edits.ecosystem is not self.ecosystem or edits.layered or self._listed \
                or EDIT_MAX_RANK[self.ecosystem] != ONE_EDIT_RANK or MIN_FUZZY != ONE_EDIT_MIN:
            return False
        self._shared = edits
        return True

    def match(self, norm: str, *, deep: bool, quick: bool = True) -> Match | None:
        """The protected name the normalised ``norm`` loosely resembles, if any; the
        costlier likenesses only where ``deep``; the quick ones only where ``quick``
        (a caller that asked for them already, and found none, leaves them out)."""
        if norm in self._listed:
            return None
        skel = skeleton(self.ecosystem, norm)
        if not skel:
            return None
        found = None
        if quick:
            found = self._same(norm, skel) or self._suffix(skel, norm) or self._one_edit(skel)
        if found is None and deep:
            found = self._two_edits(skel) or self._ratio(skel, norm) \
                or self._anagram(skel) or self._dropped_word(skel) \
                or self._within(norm, skel) or self._far_slip(skel) \
                or self._run_together(skel) or self._marker(norm, skel) \
                or self._unversioned(skel)
        return found

    def quick_after(self, seen: tuple[str, str, str | None]) -> Match | None:
        """``match(norm, deep=False)`` where the strong index this one shares its one
        edit with (``share_one_edit``: the same ranked names, and none listed here) has
        just compared ``norm``: ``seen`` is what it kept of it (``NameIndex.last``), the
        normalised name, its skeleton and the name holding that skeleton there (None:
        none), which is this index's too. Nothing is made or looked up again but the one
        edit's answer, which the strong tier's look-up kept."""
        shared = self._shared
        if shared is None:
            raise ValueError("an index that shares nothing with a strong one")
        norm, skel, exact = seen
        if not skel:
            return None
        # each likeness's first test made here (most names pass none of them): a first
        # sight with facts costs little more than one on the name alone
        if exact is not None and exact != norm:
            return self._same_as(norm, exact)
        last = norm[-1]  # (``norm`` has a skeleton: it is not empty)
        if (last.isdigit() or last == "\n") and \
                (found := self._suffix(skel, norm)) is not None:
            return found
        # the strong tier's answer for ``skel``, read where it kept it
        kept = shared.kept
        if kept[1] if kept[0] == skel else shared.neighbours(skel):
            return self._one_edit(skel)
        return None

    def _target(self, skel: str) -> str:
        return self._names[skel]

    def _same(self, norm: str, skel: str) -> Match | None:
        return self._same_as(norm, self._names.get(skel))

    def _same_as(self, norm: str, target: str | None) -> Match | None:
        """``norm`` against ``target``, the name holding its skeleton (None: none)."""
        if target is None or target == norm:
            return None
        scoped = self.ecosystem is Ecosystem.NPM and ("/" in norm) != ("/" in target)
        return Match(target, "flattened scope" if scoped else "separator variant")

    def _one_edit(self, skel: str) -> Match | None:
        best: str | None = None
        shared = self._shared
        for others in self._one.found(deletions(skel)) if shared is None \
                else shared.neighbours(skel):
            for other in (others,) if isinstance(others, str) else others:
                if other != skel and (best is None or self._rank(other) < self._rank(best)) \
                        and DamerauLevenshtein.distance(skel, other, score_cutoff=1) <= 1:
                    best = other
        return None if best is None else Match(self._target(best), technique_of(skel, best))

    def _rank(self, skel: str) -> int:
        return self._ranks[skel]

    def _suffix(self, skel: str, norm: str) -> Match | None:
        # a digit last (or before a last newline, as ``$`` reads it): what the pattern
        # needs, tested first (most names lack it)
        if not norm[-1:].isdigit() and not norm.endswith("\n"):
            return None
        found = _SUFFIX.match(norm)
        if found is None:
            return None
        base = skeleton(self.ecosystem, found.group(1))
        target = self._names.get(base)
        if target is None or len(base) < 3 or base == skel:
            return None
        return Match(target, "version suffix")

    def _two_edits(self, skel: str) -> Match | None:
        if not self._ends or len(skel) < TWO_EDITS_MIN - 2:
            return None
        size = len(skel)
        # The nearest, the first of the buckets' order (by length, then side) among
        # equals: one search in C per side over its buckets in order, the two then
        # compared as ``_ratio`` does. A name lacking three of the letters of ``skel``
        # is three edits away or more: the letter bound leaves it out first
        # (``letters``).
        best: str | None = None
        cutoff = 2
        for end in (f"^{skel[:2]}", f"{skel[-2:]}$"):
            bound = self._bound(self._ends, None, end) if size + 2 <= BOUND_LONGEST else None
            found = _joined(self._ends.get(f"{end}{n}") for n in range(size - 2, size + 3)) \
                if bound is None else bound.joined(skel, size - 2, (2,) * 5)
            if not found:
                continue
            hit = process.extractOne(skel, found, scorer=DamerauLevenshtein.distance,
                                     score_cutoff=cutoff)
            if hit is not None and (best is None or hit[1] < cutoff or (
                    hit[1] == cutoff and len(hit[0]) < len(best))):
                best, cutoff = hit[0], hit[1]
        if best is not None and best != skel:
            return Match(self._target(best), technique_of(skel, best))
        return None

    def _ratio(self, skel: str, norm: str) -> Match | None:
        n = len(skel)
        buckets = self._ratios
        for at, row in enumerate(self.shapes.ratios):
            if n < (row.shortest or row.min_len):
                continue
            low, high, lacking = _ratio_span(row.cutoff, n)
            if row.both_ends:
                if norm.startswith("@"):
                    continue
                keys: tuple[str, ...] = (_both(skel),)
            else:
                keys = (f"^{skel[0]}", f"{skel[-1]}$") if row.ends else ("",)
            # The best ratio, the first of the buckets' order (by length, then side)
            # among equals: one search in C per side over its buckets in order, the
            # two then compared (a bucket holds names of its length: the shorter
            # comes first; at one length, the first side).
            best: str | None = None
            score = 0.0
            # (a row keeping both ends has thousands of small buckets: no letter bound,
            # and only its lengths asked)
            shortest = max(low, row.min_len) if row.both_ends else low
            for k in keys:
                bound = self._bound(buckets, at, k) \
                    if high <= BOUND_LONGEST and not row.both_ends else None
                found = _joined(buckets.get(_bucket(at, m, k))
                                for m in range(shortest, high + 1)) \
                    if bound is None else bound.joined(skel, low, lacking)
                if not found:
                    continue
                hit = process.extractOne(skel, found, scorer=fuzz.ratio,
                                         score_cutoff=max(row.cutoff, score))
                if hit is not None and (best is None or hit[1] > score or (
                        hit[1] == score and len(hit[0]) < len(best))):
                    best, score = hit[0], hit[1]
            if best is not None and best != skel:
                return Match(self._target(best), f"similar spelling ({score:.0f}%)")
        return None

    def _bound(self, table: Lists, row: int | None, end: str) -> LetterBound | None:
        """The letter bound over the buckets of ``table`` of ``end`` (of ratio row
        ``row``; None: the two-edit buckets), of every length to ``BOUND_LONGEST`` in
        their order, made on first use and kept; None where they hold too few names to
        be worth it."""
        key = (row, end)
        try:
            return self._bounds[key]
        except KeyError:
            pass
        lengths = range(BOUND_LONGEST + 1)
        if row is None:
            keys = [f"{end}{m}" for m in lengths]
        else:
            keys = [_bucket(row, m, end) for m in lengths]
        groups = [table.get(b) or () for b in keys]
        bound = LetterBound(groups) if sum(map(len, groups)) >= BOUND_LEAST else None
        if len(self._bounds) >= _BOUNDS_MAX:
            self._bounds.clear()
        self._bounds[key] = bound
        return bound

    def _anagram(self, skel: str) -> Match | None:
        if len(skel) < self.shapes.anagram_min or not self._anagrams:
            return None
        other = self._anagrams.get("".join(sorted(skel)))
        if other is None or other == skel:
            return None
        return Match(self._target(other), "reordered letters")

    def _dropped_word(self, skel: str) -> Match | None:
        other = self._dropped.get(skel)
        if other is None or other == skel:
            return None
        return Match(self._target(other), "a word left out")

    def _far_slip(self, skel: str) -> Match | None:
        """A listed name beyond ``ONE_EDIT_RANK`` that ``skel`` is a typist's slip of:
        one inner letter a neighbouring key of the name's, or one inner letter added
        (the first and the last kept), the best ranked of them."""
        n = len(skel)
        if not self.shapes.slip_min or n < self.shapes.slip_min:
            return None
        slips: list[str] = []
        for i in range(1, n - 1):
            head, tail = skel[:i], skel[i + 1:]
            slips.append(head + tail)
            slips.extend(head + key + tail for key in _KEYS.get(skel[i], ()))
        best: str | None = None
        best_rank = 0
        for other, rank in self._ranks.found_with(slips):  # in one loop, in order
            if rank >= ONE_EDIT_RANK and (best is None or rank < best_rank):
                best, best_rank = other, rank
        return None if best is None else Match(self._target(best), technique_of(skel, best))

    def _marker(self, norm: str, skel: str) -> Match | None:
        """A protected name less its marker, or with one and a version suffix."""
        if not self.shapes.markers:
            return None
        marked = self._marked
        if marked is None:  # the protected names that carry a marker: made once
            marked = self._marked = Marked(self.shapes.markers, self._ranks,
                                           self.shapes.marker_rank)
        versioned = _SUFFIX.match(norm) if norm[-1:].isdigit() else None
        found = marked.find(skel, None if versioned is None else
                            skeleton(self.ecosystem, versioned.group(1)))
        return None if found is None else Match(self._target(found[0]), found[1])

    def _unversioned(self, skel: str) -> Match | None:
        if not self.shapes.version_dropped:
            return None
        versioned = self._versioned
        if versioned is None:  # the protected names with a version digit: made once
            versioned = self._versioned = Versioned(self._ranks)
        found = versioned.dropped(skel)
        return None if found is None else Match(self._target(found), "its version dropped")

    def _within(self, norm: str, skel: str) -> Match | None:
        if not self.shapes.contained:
            return None
        search = self._contained
        if search is None:
            search = self._contained = ContainedSearch(self.shapes.contained, self._ranks,
                                                       self._longest)
        found = search.find(skel, _word_ends(self.ecosystem, norm))
        return None if found is None else Match(self._target(found),
                                                "contains it with an affix")

    def _run_together(self, skel: str) -> Match | None:
        """Two of the most installed names run together, one of them (or both) less its
        plural ``s``: the one that lost it is the target (the better ranked of two)."""
        limit, least = self.shapes.joined_rank, self.shapes.joined_min
        if not limit or len(skel) < 2 * least:
            return None
        top = self._joined
        if top is None:  # the parts it may find, in a dict of their own: made once
            top = self._joined = dict(self._ranks.below(limit, least))
        for i in range(least, len(skel) - least + 1):
            head = _popular_part(top, skel[:i])
            if head is None:
                continue
            tail = _popular_part(top, skel[i:])
            if tail is None or not (head[1] or tail[1]):
                continue
            plural = [part for part in (head, tail) if part[1]]
            target = min(plural, key=lambda part: self._rank(part[0]))[0]
            return Match(self._target(target), "two names run together, a plural dropped")
        return None

def _popular_part(top: Mapping[str, int], part: str) -> tuple[str, bool] | None:
    """The skeleton ``part`` is one of ``top`` (False), or is with an ``s`` added
    (True)."""
    if part in top:
        return part, False
    if part + "s" in top:
        return part + "s", True
    return None


def _word_ends(ecosystem: Ecosystem, norm: str) -> set[int]:
    """Where the words of ``norm`` end in its skeleton, and 0."""
    edges = {0}
    at = 0
    for word in _WORDS.split(norm):
        at += len(skeleton(ecosystem, word)) if word else 0
        edges.add(at)
    return edges


def _bucket(row: int, length: int, end: str) -> str:
    """The key of the bucket of ratio row ``row`` for skeletons of ``length`` letters
    and, for a row that keeps an end, that ``end`` (``^a``, ``a$``; else "")."""
    return f"{row} {length} {end}"


def _both(skel: str) -> str:
    """The end key of a row that keeps both ends: ``^abz$`` of ``ab...z``."""
    return f"^{skel[:2]}{skel[-1]}$"


def _joined(groups: Iterable[Sequence[str] | None]) -> list[str]:
    """The names of ``groups`` (buckets, in their order; None: an empty one) in one
    list."""
    return [name for group in groups if group for name in group]


@functools.lru_cache(maxsize=1024)
def _ratio_span(cutoff: float, n: int) -> tuple[int, int, tuple[int, ...]]:
    """The lengths ``low`` to ``high`` a name needs for a ratio of ``cutoff`` with one
    of ``n`` letters, and for each, the most letters of it the name may lack (the
    letter bound's ``lacking``)."""
    # a ratio r of lengths n and m needs 2 min(n, m) / (n + m) >= r
    share = cutoff / 100
    low = int(n * share / (2 - share))
    high = int(n * (2 - share) / share) + 1
    # A ratio of at least the cutoff needs a longest common subsequence of
    # ``need(m)`` letters: a name lacking more than ``n - need(m)`` of the letters of
    # the other is left out before rapidfuzz (``letters``).
    return low, high, tuple(n - _ratio_need(cutoff, n, m) for m in range(low, high + 1))


def _ratio_need(cutoff: float, n: int, m: int) -> int:
    """The fewest letters two names of ``n`` and ``m`` letters share, in order, for a
    rapidfuzz ratio (``200 LCS / (n + m)``) of at least ``cutoff``: a hair below the
    exact figure, so that rounding never leaves out a name that reaches it."""
    return max(0, math.ceil(cutoff * (n + m) / 200 - 1e-6))
