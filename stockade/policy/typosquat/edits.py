"""Look-alikes by edit distance: the protected names one or two edits may imitate.

Owns three look-ups, each over the protected names its limits let it reach:

- a one-deletion neighbourhood index (SymSpell's idea) checked with rapidfuzz's
  Damerau-Levenshtein distance: one edit for names of seven letters or more (for five
  and six, a swap, a doubled letter, or for the most installed a neighbouring key or
  another vowel; below eight letters, only of the 3,000 most installed), two from ten;
  below the 500 most installed, only the edits of a typist's slip;
- the fifty most installed names, the ones squatters aim at first, compared directly
  with names that share their first letter: any one edit from five letters, any two
  from eight (from ten letters, the 200 most installed too, with or without their
  version digit);
- swapped neighbours of names listed beyond the reach of edits, by what a swap leaves
  as it is.

Pure; the ranks and skeletons are the owning ``NameIndex``'s.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Set
from typing import TypeVar

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, Levenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.compare import Match, is_slip, near_key, technique_of
from stockade.policy.typosquat.forms import DIGITS, deletions, skeleton, swap_key
from stockade.policy.typosquat.limits import (
    ANY_EDIT,
    EDGE_RANK,
    EDIT_MAX_RANK,
    MIN_FUZZY,
    SHORT_EDIT_LEN,
    SHORT_EDIT_RANK,
    SHORT_SLIP_RANK,
    SUBSTITUTE_RANK,
    SWAP_MIN,
    TOP_LONG,
    TOP_LONG_RANK,
    TOP_ONE,
    TOP_RANK,
    TOP_TWO,
    TWO_EDITS,
)
from stockade.policy.typosquat.packed import Names

K = TypeVar("K", str, bytes)


class EditIndex:
    """The protected names of one ecosystem as edits reach them."""

    def __init__(self, ecosystem: Ecosystem, names: Mapping[str, int],
                 skeletons: Mapping[str, str]) -> None:
        """``names`` (normalised name -> rank) and ``skeletons`` (skeleton -> best-ranked
        name) are the owning index's, filled as it adds names."""
        self._ecosystem = ecosystem
        self._names = names
        self._skeletons = skeletons
        # one-deletion variant -> skeleton(s); a str while unique (packed by ``seal``)
        self._deletes: dict[str, str | tuple[str, ...]] | Names = {}
        # (candidate length, first letter) -> skeletons of the most installed within two
        # edits' length of it that start with that letter (typists rarely miss the first)
        self._top: dict[tuple[int, str], list[str]] = {}
        self._top_names: dict[str, str] = {}  # those skeletons -> name
        # skeletons of names too far down for edits, by what swapping two of their
        # letters leaves as it is
        self._swaps: dict[bytes, str | tuple[str, ...]] | Names = {}
        # a layered index (``over``): the shipped lists' edits, and the skeletons of
        # theirs that the policy's own names hold (filed here, not there)
        self._base: EditIndex | None = None
        self._hidden: Set[str] = frozenset()
        # the last skeleton ``neighbours`` looked up and what it found: the strong
        # tier's look-up, read again by the loose tier's quick search (one tuple: a
        # thread reads both halves or neither; a reader checks the skeleton is its own)
        self.kept: tuple[str, list[str | tuple[str, ...]]] = ("", [])

    def over(self, base: EditIndex, names: Mapping[str, int], skeletons: Mapping[str, str],
             hidden: Set[str]) -> EditIndex:
        """These (the policy's own names, all ranked first) looked up before ``base``,
        with the layered ``names`` and ``skeletons``; ``hidden``: skeletons of
        ``base`` that these hold."""
        layered = EditIndex(self._ecosystem, names, skeletons)
        layered._deletes = self._deletes
        # the most installed by length and first letter: the policy's names first
        top = dict(base._top)
        for key, forms in self._top.items():
            top[key] = [*forms, *base._top.get(key, ())]
        layered._top, layered._top_names = top, {**base._top_names, **self._top_names}
        layered._swaps = base._swaps  # the policy's names, ranked first, take no swaps
        layered._base, layered._hidden = base, hidden
        return layered

    def add(self, name: str, skel: str, rank: int) -> None:
        """File a protected name under its first skeleton, where its rank and length
        let edits reach it."""
        eco = self._ecosystem
        if eco is not Ecosystem.MAVEN:
            self._add_top(name, skel, rank)
            if skel.isascii() and (
                    (rank >= EDIT_MAX_RANK[eco] and len(skel) >= SWAP_MIN)
                    or (SWAP_MIN <= len(skel) < SHORT_EDIT_LEN and rank >= SHORT_EDIT_RANK)):
                key = swap_key(skel)
                swaps = self._adding(self._swaps)
                held = swaps.get(key)
                swaps[key] = skel if held is None else (
                    (held, skel) if isinstance(held, str) else (*held, skel))
        # Every name of MIN_FUZZY letters or more within EDIT_MAX_RANK is filed, the
        # short ones beyond SHORT_EDIT_RANK too, which ``fuzzy`` leaves out as it reads
        # them: the table then holds exactly the loose tier's one-edit neighbours, and
        # the loose search reads a name's deletions from this look-up (``neighbours``)
        # instead of probing a table of its own.
        if rank >= EDIT_MAX_RANK[eco] or len(skel) < MIN_FUZZY:
            return  # too short, or too far down, for an edit alone to imitate it
        deletes = self._adding(self._deletes)
        for variant in deletions(skel):
            held = deletes.get(variant)
            if held is None:
                deletes[variant] = skel
            elif isinstance(held, str):
                deletes[variant] = (held, skel)
            else:
                deletes[variant] = (*held, skel)

    @staticmethod
    def _adding(table: dict[K, str | tuple[str, ...]] | Names,
                ) -> dict[K, str | tuple[str, ...]]:
        if isinstance(table, Names):
            raise TypeError("a sealed index takes no more names")
        return table

    def seal(self, names: Mapping[str, int], skeletons: Mapping[str, str]) -> None:
        """Pack the tables once every name is added (``packed``: a few bytes a key, no
        object per name), and read the owner's packed ``names`` and ``skeletons``."""
        self._names, self._skeletons = names, skeletons
        self._deletes = Names(Names.pack(self._deletes.items()))
        self._swaps = Names(Names.pack(self._swaps.items()))

    def _add_top(self, name: str, skel: str, rank: int) -> None:
        bare = skel.rstrip("0123456789")  # beautifulsoup4 is squatted as "BeautifulSoup"
        for form in dict.fromkeys((skel, bare)):
            if rank < TOP_RANK or (rank < TOP_LONG_RANK and len(form) >= TOP_LONG):
                self._top_names.setdefault(form, name)
                # filed under every candidate length two edits may reach
                for length in range(len(form) - 2, len(form) + 3):
                    self._top.setdefault((length, form[:1]), []).append(form)

    def fuzzy(self, skel: str, norm: str) -> Match | None:
        """The best-ranked protected name the fewest edits from ``skel``, within the
        limits; else one of the most installed (``near_top``)."""
        size = len(skel)
        if size < MIN_FUZZY:
            return None
        scoped = "/" in norm
        best: tuple[int, int, str] | None = None
        found: Iterable[str | tuple[str, ...]] = self.neighbours(skel)
        if self._base is not None:
            found = itertools.chain(found, self._base.neighbours(skel))
        for held in found:
            for candidate in (held,) if isinstance(held, str) else held:
                if candidate == skel:
                    continue  # the same skeleton: the exact check's, with its limits
                length = len(candidate)
                shorter = length if length < size else size
                target = self._skeletons[candidate]
                rank = self._names[target]
                if shorter < SHORT_EDIT_LEN and rank >= SHORT_EDIT_RANK:
                    continue
                edge = rank >= EDGE_RANK
                if edge and (candidate[0] != skel[0]
                             or (length != size and candidate[-1] != skel[-1])
                             # a scope of one's own and an edit: scope confusion, which
                             # counts only for the SCOPE_MAX_RANK most installed
                             or (scoped and "/" not in target)):
                    continue  # see EDGE_RANK
                allowed = 1 if edge or shorter < TWO_EDITS else 2
                distance = DamerauLevenshtein.distance(skel, candidate, score_cutoff=allowed)
                if distance > allowed:
                    continue
                if shorter < ANY_EDIT and not is_slip(skel, candidate) \
                        and not (rank < SHORT_SLIP_RANK and near_key(skel, candidate)):
                    continue
                if edge and length == size and rank >= SUBSTITUTE_RANK \
                        and not (is_slip(skel, candidate) or near_key(skel, candidate)):
                    continue
                if edge and length != size and DIGITS.sub("", skel) == DIGITS.sub("", candidate):
                    continue  # a version digit added or dropped: vue3-spinner, angular-flatpickr
                key = (distance, rank, target)
                if best is None or key < best:
                    best = key
        if best is None:
            return self.near_top(skel)
        target = best[2]
        return Match(target, technique_of(skel, skeleton(self._ecosystem, target)))

    @property
    def ecosystem(self) -> Ecosystem:
        return self._ecosystem

    @property
    def layered(self) -> bool:
        """True for the policy's own names over a base (``over``)."""
        return self._base is not None

    def neighbours(self, skel: str) -> list[str | tuple[str, ...]]:
        """What the deletions hold of ``skel``'s one-letter deletions (and ``skel``):
        the skeletons one deletion from it on either side, a str where a deletion holds
        one, a tuple where several (this index's own, not its base's). The last
        skeleton's answer is kept: the loose tier asks for the one the strong tier
        just did (the list is shared: read it, never change it)."""
        kept = self.kept
        if kept[0] == skel and skel:
            return kept[1]
        deletes = self._deletes
        found = deletes.found_deletions(skel) if isinstance(deletes, Names) \
            else self._found(deletions(skel))
        self.kept = (skel, found)
        return found

    def _found(self, variants: set[str]) -> list[str | tuple[str, ...]]:
        """What the deletions hold of ``variants``."""
        deletes = self._deletes
        if isinstance(deletes, Names):
            return deletes.found(variants)
        return [held for v in variants if (held := deletes.get(v)) is not None]

    def near_top(self, skel: str) -> Match | None:
        """Any one edit (from five letters) or two (from eight) of one of the fifty most
        installed names; from ten letters, two edits of the 200 most installed too."""
        if len(skel) < TOP_ONE:
            return None
        window = self._top.get((len(skel), skel[:1]))
        if not window:
            return None
        # Levenshtein (a swap counts two) keeps this one pass of bit-parallel
        # comparisons; swaps of these names are found by the edit index already.
        found = process.extractOne(skel, window, scorer=Levenshtein.distance,
                                   score_cutoff=2)
        if found is None:
            return None
        candidate, distance = found[0], found[1]
        if distance > 1 and min(len(candidate), len(skel)) < TOP_TWO:
            return None
        target = self._top_names[candidate]
        if distance > 1 and self._names[target] >= TOP_RANK \
                and min(len(candidate), len(skel)) < TOP_LONG:
            return None
        return Match(target, technique_of(skel, skeleton(self._ecosystem, target)))

    def swapped(self, skel: str) -> Match | None:
        """Two neighbouring letters swapped, not the first, in a name of SWAP_MIN
        letters or more listed beyond the reach of edits (``etherscna-api``,
        ``xgplayre``, ``pytroch``), looked up by what a swap leaves as it is
        (``swap_key``)."""
        if len(skel) < SWAP_MIN or not self._swaps or not skel.isascii():
            return None
        held = self._swaps.get(swap_key(skel))
        if held is None:
            return None
        for theirs in (held,) if isinstance(held, str) else held:
            # the key holds the length: ``is_slip`` tests a swap of neighbours here
            if theirs != skel and theirs not in self._hidden and is_slip(skel, theirs) \
                    and DIGITS.sub("", theirs) != DIGITS.sub("", skel):
                return Match(self._skeletons[theirs], "swapped letters")
        return None
