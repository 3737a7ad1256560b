"""A letter-count bound that leaves most names out before rapidfuzz compares them.

Owns the prefilter of the loose search's bucketed look-ups (a ratio, two edits): the
names of several buckets in one order, and for every letter the names holding it
once or more and twice or more, each set the bits of one int. A name ``b`` that
lacks ``k`` of the letters of ``a`` (counted with their repeats: ``a`` has three
``e`` and ``b`` one, two lacking) shares at most ``len(a) - k`` letters with it, so

- their longest common subsequence is at most ``len(a) - k``: a rapidfuzz ratio
  (``2 LCS / (len(a) + len(b))``) below the cutoff follows from ``k`` alone;
- every edit (a letter added, dropped, changed, two swapped) takes at most one of
  ``a``'s letters away: ``b`` is ``k`` edits from ``a`` or more.

Counting what each name lacks is a few operations on ints a bit per name, for all the
names of a bucket at once (the letters of ``a`` one after the other), where rapidfuzz
costs some hundred nanoseconds a name; the names the bound keeps are compared as
before, in their order, so the answers are the same (``tests/unit/policy``). A name
holding a letter three times counts as holding it twice (the bound stays a bound).
Pure; built from the buckets it filters, never kept in a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# Past this many letters a name may lack, the bound leaves too many names to pay for
# itself (and its counter holds up to seven): the buckets are searched whole.
MOST_LACKING = 7


class LetterBound:
    """The names of buckets ``0 .. len(groups) - 1`` in one order, for the bound."""

    __slots__ = ("_full", "_groups", "_lack_once", "_lack_twice", "_names")

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        names: list[str] = []
        spans: list[tuple[int, int]] = []
        once: dict[str, list[int]] = {}
        twice: dict[str, list[int]] = {}
        for group in groups:
            start = len(names)
            for name in group:
                at = len(names)
                names.append(name)
                seen: set[str] = set()
                for ch in name:
                    if ch in seen:
                        twice.setdefault(ch, []).append(at)
                    else:
                        seen.add(ch)
                        once.setdefault(ch, []).append(at)
            spans.append((start, len(names)))
        self._names = names
        self._groups = spans
        # for each letter, the names lacking it, and those holding it once at most:
        # ints of no sign (an operation with a negative int takes a slower path)
        self._full = full = (1 << len(names)) - 1
        self._lack_once = {ch: full ^ _bits(at) for ch, at in once.items()}
        self._lack_twice = {ch: full ^ _bits(twice.get(ch, ())) for ch in once}

    def __len__(self) -> int:
        return len(self._names)

    def kept(self, word: str, first: int, lacking: Sequence[int]) -> list[list[str]] | None:
        """For each bucket ``first + i``, its names lacking at most ``lacking[i]`` of
        ``word``'s letters (with repeats), in their order (an empty list: none; a
        negative ``lacking``: none). None when the bound would cost more than it saves
        (``MOST_LACKING``): search the buckets whole."""
        groups = self._groups[first:first + len(lacking)]
        if len(groups) != len(lacking):
            raise ValueError("buckets beyond the bound's")
        counted = self._count(word, max(lacking, default=-1))
        if counted is None:
            return None
        out: list[list[str]] = []
        for (start, end), most in zip(groups, lacking, strict=True):
            out.append(self._names_within(counted, most, start, end))
        return out

    def joined(self, word: str, first: int, lacking: Sequence[int]) -> list[str]:
        """The names ``kept`` keeps, its buckets' lists joined in their order: the
        buckets of one ``lacking`` next to each other read as one (a ratio's
        ``lacking`` falls as the length grows: a few runs where ``kept`` reads a
        dozen buckets). Where the bound would cost more than it saves
        (``MOST_LACKING``), every name of the buckets, in order (one slice of the
        bound's list, where the packed table would decode each bucket): rapidfuzz
        compares them all. Leaving out the bound for buckets of a few hundred names
        was measured too: rapidfuzz's Damerau-Levenshtein costs more there."""
        groups = self._groups[first:first + len(lacking)]
        if len(groups) != len(lacking):
            raise ValueError("buckets beyond the bound's")
        if not groups:
            return []
        counted = self._count(word, max(lacking))
        if counted is None:
            return self._names[groups[0][0]:groups[-1][1]]
        out: list[str] = []
        at = 0
        while at < len(lacking):
            most, start = lacking[at], groups[at][0]
            while at + 1 < len(lacking) and lacking[at + 1] == most:
                at += 1
            out += self._names_within(counted, most, start, groups[at][1])
            at += 1
        return out

    def _count(self, word: str, most: int) -> _Counted | None:
        """How many of ``word``'s letters each name lacks, where any name may lack
        ``most`` or fewer; None when the bound would cost more than it saves."""
        if most > MOST_LACKING:
            return None
        if most < 0:
            return _Counted(0, 0, 0, 0, 0, {})
        counts: dict[str, int] = {}
        for ch in word:
            counts[ch] = counts.get(ch, 0) + 1
        lack_once, lack_twice = self._lack_once, self._lack_twice
        missing = 0  # letters no name holds: lacked by all
        masks: list[int] = []  # per letter of ``word`` (repeats apart): who lacks it
        for ch, count in counts.items():
            lack = lack_once.get(ch)
            if lack is None:
                missing += count
                continue
            masks.append(lack)
            if count > 1:
                masks.extend([lack_twice[ch]] * (count - 1))
        if most - missing < 0:
            return _Counted(missing, 0, 0, 0, 0, {})
        # How many letters each name lacks, as a three-bit counter kept in three ints
        # (bit i of ``b0``, ``b1``, ``b2`` the count of name i), ``over`` the names
        # past seven: a carry chain of a few operations a letter, for all names.
        b0 = b1 = b2 = over = 0
        for lack in masks:
            carry = b0 & lack
            b0 ^= lack
            carry2 = b1 & carry
            b1 ^= carry
            over |= b2 & carry2
            b2 ^= carry2
        return _Counted(missing, b0, b1, b2, over, {})

    def _names_within(self, counted: _Counted, most: int, start: int, end: int) -> list[str]:
        """The names ``start`` to ``end`` lacking ``most`` letters or fewer, in order."""
        found: list[str] = []
        room = most - counted.missing
        if room < 0 or end == start:
            return found
        kept = counted.within.get(room)
        if kept is None:
            # the names whose count is above ``room``: compared from the top bit down
            full = self._full
            above, same = counted.over, full
            for bit, plane in ((4, counted.b2), (2, counted.b1), (1, counted.b0)):
                if room & bit:
                    same &= plane
                else:
                    above |= same & plane
                    same ^= same & plane
            kept = counted.within[room] = full ^ above
        bits = kept >> start & ((1 << (end - start)) - 1)
        names = self._names
        while bits:
            low = bits & -bits
            found.append(names[start + low.bit_length() - 1])
            bits ^= low
        return found


class _Counted(NamedTuple):
    """A word's letters lacked, per name (``LetterBound._count``): those no name
    holds, the three-bit count's planes and the names past seven, and each room's
    names once worked out."""

    missing: int
    b0: int
    b1: int
    b2: int
    over: int
    within: dict[int, int]


def _bits(positions: Sequence[int]) -> int:
    """The int with the bits of ``positions`` set."""
    if not positions:
        return 0
    raw = bytearray((max(positions) >> 3) + 1)
    for at in positions:
        raw[at >> 3] |= 1 << (at & 7)
    return int.from_bytes(raw, "little")
