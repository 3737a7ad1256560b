"""How two names differ: the comparisons the typosquat index makes once a look-up
has found a candidate, and what a match says of it.

Owns the technique a refusal names (swapped letters, a dropped letter...), the slips
of a typist's finger (swapped neighbours, doubled letters, a neighbouring key, dropped
vowels), and who owns a Maven namespace. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.typosquat.limits import NEIGHBOURS, VOWELS, VOWELS_MAX


def technique_of(candidate: str, target: str) -> str:
    """How the skeleton ``candidate`` differs from ``target``, in a refusal's words."""
    if len(candidate) == len(target) and sorted(candidate) == sorted(target):
        return "swapped letters"
    longer, shorter = (candidate, target) if len(candidate) > len(target) else (target, candidate)
    if len(longer) == len(shorter) + 1:
        for i in range(len(longer)):
            if longer[:i] + longer[i + 1:] == shorter:
                repeated = (i > 0 and longer[i - 1] == longer[i]) or (
                    i + 1 < len(longer) and longer[i + 1] == longer[i])
                if repeated:
                    return "repeated letter" if longer is candidate else "dropped repeated letter"
                return "added letter" if longer is candidate else "dropped letter"
    distance = DamerauLevenshtein.distance(candidate, target)
    return "one edit" if distance == 1 else f"{distance} edits"


@dataclass(frozen=True, slots=True)
class Match:
    """A protected name a candidate imitates, and how."""

    target: str
    technique: str


def dropped_vowels(short: str, full: str, starts: frozenset[int]) -> bool:
    """True when ``short`` is ``full`` with one or two single vowels dropped from
    inside its words (``covrage``), none starting a word and no two side by side:
    ``react-native-path`` is not ``react-native-app-auth``, nor ``swagger-express``
    ``swagger-ui-express``."""
    dropped = len(full) - len(short)
    if not 1 <= dropped <= VOWELS_MAX:
        return False
    # A dropped letter lies after the part both share at the start and before the
    # part they share at the end; every place there is tried (``unicod-emoji`` drops
    # the e of ``unicode``, not the one that starts ``emoji``).
    head = _shared(short, full)
    tail = _shared(short[::-1], full[::-1])
    last = min(head, len(full) - 1)
    if dropped == 1:
        first = max(0, len(full) - 1 - tail)
        return any(full[i] in "aeiou" and i not in starts for i in range(first, last + 1))
    heads = [i for i in range(last + 1) if full[i] in "aeiou" and i not in starts]
    tails = [k for k in range(len(full) - 1 - tail, len(full))
             if full[k] in "aeiou" and k not in starts]
    return any(k > i + 1 and full[i + 1:k] == short[i:k - 1] for i in heads for k in tails)


def _shared(a: str, b: str) -> int:
    """How many letters ``a`` and ``b`` share at the start."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def is_slip(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by swapped neighbours or a doubled letter."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] \
            and a[diff[1]] == b[diff[0]]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if len(longer) != len(shorter) + 1:
        return False
    for i in range(len(longer)):
        if longer[:i] + longer[i + 1:] == shorter:
            return (i > 0 and longer[i - 1] == longer[i]) or (
                i + 1 < len(longer) and longer[i + 1] == longer[i])
    return False


# Hosts on which each account is a namespace of its own (io.github.<user>).
_SHARED_HOSTS = frozenset({"io.github", "com.github", "io.gitlab", "com.gitlab",
                           "io.bitbucket", "org.bitbucket", "com.bitbucket"})


def personal(group: str) -> bool:
    """True for a groupId on a shared host, where any account gets a namespace."""
    return ".".join(group.split(".")[:2]) in _SHARED_HOSTS


def maven_owner(name: str) -> str:
    """The namespace Maven Central verifies for a groupId (or coordinate): its domain."""
    parts = name.partition(":")[0].split(".")
    width = 3 if ".".join(parts[:2]) in _SHARED_HOSTS else 2
    return ".".join(parts[:width])


def near_key(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ in one letter: a neighbouring key or another vowel."""
    if len(a) != len(b):
        return False
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(diff) != 1:
        return False
    x, y = diff[0]
    return y in NEIGHBOURS.get(x, ()) or (x in VOWELS and y in VOWELS)
