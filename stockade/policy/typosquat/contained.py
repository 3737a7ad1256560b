"""The loose search's contained names: a protected name inside another, with an affix.

Owns the ``Contained`` rows of a loose index's shapes and the search they make: the
longest protected name a name's skeleton holds (the first of the longest) that a row
takes, by its length, its rank, the affix's length and where it sits among the words.
The names of the rows within ``CONTAINED_SET_RANK`` are in one Aho-Corasick automaton
(``ahocorasick_rs``): one pass in C over a name finds every one it holds, where asking
a table of each of its substrings cost a young name some 50 us. A row reaching further
asks the skeleton table only of the few substrings its affix and its placement allow.
Pure; made from the loose index's ranks on first use, never kept in a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ahocorasick_rs import AhoCorasick

from stockade.policy.typosquat.packed import Ranks

CONTAINED_LONGEST = 64  # letters of a name searched for contained names (bounded work)
# A contained row reaching this far down the list at most has its names in the
# automaton: one pass finds every one a name holds. A row reaching further asks the
# packed table of the few substrings its affix allows.
CONTAINED_SET_RANK = 20_000


@dataclass(frozen=True, slots=True)
class Contained:
    """A protected name of ``min_len`` letters or more, among the ``max_rank`` most
    installed, inside a name with at most ``max_affix`` letters more, where it
    ``sits``: ``anywhere``; ``not whole words`` (the plugin form ``django-guitars``,
    a protected name as whole words beside others, is left out: real projects are
    named so); ``one edge`` (exactly one of its ends on a word boundary: a name run
    into another, ``pandasrequest``, ``nodeffmpeg``, ``loadyaml``)."""

    min_len: int
    max_rank: int
    max_affix: int
    sits: str  # "anywhere", "not whole words", "one edge"


class ContainedSearch:
    """The contained rows of one loose index, over its skeletons' ranks."""

    __slots__ = ("_automaton", "_longest", "_ranked", "_ranks", "_rows")

    def __init__(self, rows: Sequence[Contained], ranks: Ranks, longest: int) -> None:
        """``ranks``: skeleton -> rank; ``longest``: the longest skeleton a row may
        find. The automaton holds the names of the rows within ``CONTAINED_SET_RANK``
        (ranked under a row's ``max_rank``, of its ``min_len`` letters or more), each
        one's rank by its number there (some 20 ms and 4 MiB for npm's 18,000)."""
        self._rows, self._ranks, self._longest = tuple(rows), ranks, longest
        names: dict[str, int] = {}
        for row in rows:
            if row.max_rank <= CONTAINED_SET_RANK:
                names.update(ranks.below(row.max_rank, row.min_len))
        self._automaton = AhoCorasick(names) if names else None
        self._ranked = list(names.values())

    def find(self, skel: str, edges: set[int]) -> str | None:
        """The longest skeleton inside ``skel`` (not all of it) a row takes, the first
        of the longest; ``edges``: where the name's words end in ``skel``, and 0."""
        n = len(skel)
        if not self._rows or n > CONTAINED_LONGEST:
            return None
        # The substrings a row may take, as (letters, start, rank): the automaton's
        # names ``skel`` holds, found in one pass in C; for a row reaching further, the
        # few substrings its affix leaves room for, asked of the table.
        found = [] if self._automaton is None else [
            (end - start, start, self._ranked[hit]) for hit, start, end
            in self._automaton.find_matches_as_indexes(skel, overlapping=True)]
        for row in self._rows:
            if row.max_rank > CONTAINED_SET_RANK:
                for size in range(max(row.min_len, n - row.max_affix),
                                  min(n - 1, self._longest) + 1):
                    for i in range(n - size + 1):
                        if not _sits(row.sits, (i in edges) + (i + size in edges)):
                            continue  # the row would not take it: not asked
                        rank = self._ranks.get(skel[i:i + size])
                        if rank is not None:
                            found.append((size, i, rank))
        # the longest a row takes, the first of them (as a search from the left that
        # keeps only a longer one)
        found.sort(key=_longest_first)
        for size, i, rank in found:
            if size == n:
                continue
            sides = (i in edges) + (i + size in edges)
            if any(size >= row.min_len and rank < row.max_rank
                   and n - size <= row.max_affix and _sits(row.sits, sides)
                   for row in self._rows):
                return skel[i:i + size]
        return None


def _longest_first(found: tuple[int, int, int]) -> tuple[int, int]:
    return -found[0], found[1]


def _sits(where: str, sides: int) -> bool:
    """True when a contained name with ``sides`` ends on word boundaries sits ``where``."""
    if where == "not whole words":
        return sides < 2
    if where == "one edge":
        return sides == 1
    return True
