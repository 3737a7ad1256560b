"""The loose search's marker shapes: a protected name less its ecosystem marker or its
version digit, and a versioned name with a marker around a protected one.

Owns two deep likenesses of the loose index (``loose.Shapes.markers``): a name that
is a protected one with its ecosystem marker taken off (``smb`` for ``pysmb``: the
strong tier takes only the most installed, from four letters), and a name with a
version suffix whose rest is a marker around a protected name (``liblxml3`` for
``lxml``: the strong tier's affixes and the quick version suffix each see half of
it). The protected names that carry a marker are few (some 1,500 of PyPI's 15,000):
their cores are kept in a dict made on first use (``Marked``), never in a file, so a
look-up is one probe of it. A version digit dropped (``smb`` for ``smb2``: the strong
tier takes it of the most installed only) is one probe of such a dict too
(``Versioned``). Pure; the ranks are passed in.
"""

from __future__ import annotations

from stockade.policy.typosquat.packed import Ranks

MARKER_CORE = 3  # letters the name left once a marker is taken off must keep


class Marked:
    """The protected names among the ``max_rank`` most installed that start or end
    with one of ``markers``, by what is left without it (the best ranked of each)."""

    __slots__ = ("_cores", "_markers", "_max_rank", "_ranks")

    def __init__(self, markers: tuple[str, ...], ranks: Ranks, max_rank: int) -> None:
        self._markers, self._ranks, self._max_rank = markers, ranks, max_rank
        cores: dict[str, tuple[int, str]] = {}
        for skel, rank in ranks.below(max_rank, MARKER_CORE + 1):
            for marker in markers:
                for core in (skel.removeprefix(marker), skel.removesuffix(marker)):
                    if core != skel and len(core) >= MARKER_CORE and \
                            (core not in cores or rank < cores[core][0]):
                        cores[core] = (rank, skel)
        self._cores = {core: skel for core, (_, skel) in cores.items()}

    def find(self, skel: str, base: str | None) -> tuple[str, str] | None:
        """The protected skeleton ``skel`` is with a marker before or after it, else
        the one ``base`` (a versioned name's skeleton less its version: ``liblxml``;
        None: no version) holds with a marker around it; and how."""
        found = self._cores.get(skel)
        if found is not None:
            return found, "its marker dropped"
        if base is None or base == skel:
            return None
        found = self._around(base)
        return None if found is None else (found, "a marker and a version suffix added")

    def _around(self, base: str) -> str | None:
        """The best ranked protected skeleton among the ``max_rank`` most installed
        that ``base`` is with a marker before or after it."""
        rests = [rest for marker in self._markers
                 for rest in (base.removeprefix(marker), base.removesuffix(marker))
                 if rest != base and len(rest) >= MARKER_CORE]
        best: str | None = None
        best_rank = self._max_rank
        for other, rank in self._ranks.found_with(rests):  # in one loop, in order
            if rank < best_rank:
                best, best_rank = other, rank
        return best


class Versioned:
    """The protected names that end with a version digit (some 3,700 of npm's 125,000),
    by what is left without it: the best ranked of each."""

    __slots__ = ("_bases",)

    def __init__(self, ranks: Ranks) -> None:
        bases: dict[str, tuple[int, str]] = {}
        for skel in ranks:  # one name at a time: no list of them all (npm's 125,000)
            base = skel[:-1]
            if len(skel) > MARKER_CORE and skel[-1].isdigit() and not base[-1].isdigit():
                rank = ranks[skel]
                if base not in bases or rank < bases[base][0]:
                    bases[base] = (rank, skel)
        self._bases = {base: skel for base, (_, skel) in bases.items()}

    def dropped(self, skel: str) -> str | None:
        """The best ranked protected skeleton that is ``skel`` with a version digit
        after it (``smb2`` of ``smb``)."""
        return self._bases.get(skel)
