"""The letter bound before rapidfuzz (``letters``) leaves out only names that cannot
reach the cutoff: the loose search answers as the plain search over whole buckets."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import pytest
from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize
from stockade.policy.rules.typosquat import _loose, popular
from stockade.policy.typosquat import contained
from stockade.policy.typosquat.compare import Match, technique_of
from stockade.policy.typosquat.contained import CONTAINED_LONGEST, Contained, _sits
from stockade.policy.typosquat.forms import skeleton
from stockade.policy.typosquat.letters import MOST_LACKING, LetterBound
from stockade.policy.typosquat.loose import (
    ANY_RANK,
    TWO_EDITS_MIN,
    LooseIndex,
    Shapes,
    _bucket,
    _ratio_need,
)

LABELLED = Path(__file__).parents[3] / "bench" / "data" / "typosquats.tsv"


def _plain_ratio(index: LooseIndex, skel: str, norm: str) -> Match | None:
    """The ratio search as it read before the bound: every name of every bucket."""
    n = len(skel)
    for at, row in enumerate(index.shapes.ratios):
        if n < (row.shortest or row.min_len) or (row.both_ends and norm.startswith("@")):
            continue
        share = row.cutoff / 100
        low = int(n * share / (2 - share))
        high = int(n * (2 - share) / share) + 1
        if row.both_ends:
            keys: tuple[str, ...] = (f"^{skel[:2]}{skel[-1]}$",)
        else:
            keys = (f"^{skel[0]}", f"{skel[-1]}$") if row.ends else ("",)
        best: str | None = None
        score = 0.0
        for m in range(low, high + 1):
            for k in keys:
                found = index._ratios.get(_bucket(at, m, k))
                if found is None:
                    continue
                hit = process.extractOne(skel, found, scorer=fuzz.ratio,
                                         score_cutoff=max(row.cutoff, score))
                if hit is not None and (best is None or hit[1] > score):
                    best, score = hit[0], hit[1]
        if best is not None and best != skel:
            return Match(index._names[best], f"similar spelling ({score:.0f}%)")
    return None


def _plain_two_edits(index: LooseIndex, skel: str) -> Match | None:
    """The two-edit search as it read before the bound."""
    if not index._ends or len(skel) < TWO_EDITS_MIN - 2:
        return None
    head, tail = skel[:2], skel[-2:]
    best: str | None = None
    cutoff = 2
    for n in range(len(skel) - 2, len(skel) + 3):
        for end in (f"^{head}{n}", f"{tail}${n}"):
            bucket = index._ends.get(end)
            if bucket is None:
                continue
            hit = process.extractOne(skel, bucket, scorer=DamerauLevenshtein.distance,
                                     score_cutoff=cutoff)
            if hit is not None:
                best, cutoff = hit[0], hit[1] - 1
                if cutoff < 0:
                    break
        if cutoff < 0:
            break
    if best is not None and best != skel:
        return Match(index._names[best], technique_of(skel, best))
    return None


def _plain_within(index: LooseIndex, norm: str, skel: str) -> Match | None:
    """The contained search as it read before its rows' sets: every substring asked
    of the packed table."""
    rows = index.shapes.contained
    if not rows or len(skel) > CONTAINED_LONGEST:
        return None
    least = min(row.min_len for row in rows)
    edges = {0}
    at = 0
    for word in re.split(r"[-_.@/:\s]+", norm):
        at += len(skeleton(index.ecosystem, word)) if word else 0
        edges.add(at)
    best: str | None = None
    n = len(skel)
    for i in range(n - least + 1):
        for j in range(i + least, min(n, i + index._longest) + 1):
            if j - i == n or (best is not None and j - i <= len(best)):
                continue
            rank = index._ranks.get(skel[i:j])
            if rank is None:
                continue
            sides = (i in edges) + (j in edges)
            if any(j - i >= row.min_len and rank < row.max_rank
                   and n - (j - i) <= row.max_affix and _sits(row.sits, sides)
                   for row in rows):
                best = skel[i:j]
    return None if best is None else Match(index._names[best], "contains it with an affix")


def _mutated(rng: random.Random, name: str) -> str:
    """``name`` with one to three random edits (the squats a ratio or two edits find)."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789-"
    out = list(name)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(4)
        if kind == 0 or not out:
            out.insert(at, rng.choice(letters))
        elif kind == 1 and at < len(out):
            del out[at]
        elif kind == 2 and at < len(out):
            out[at] = rng.choice(letters)
        elif at + 1 < len(out):
            out[at], out[at + 1] = out[at + 1], out[at]
    return "".join(out) or name


def test_the_bound_keeps_every_name_within_reach() -> None:
    """Against rapidfuzz over every name: each name of ratio >= the cutoff, or two
    edits or fewer, is kept, in its order; and names are left out."""
    rng = random.Random(11)  # noqa: S311 - test data, not secrets
    letters = "aabcdeeo"  # few letters, repeated: the repeats counted matter
    groups = [[("".join(rng.choice(letters) for _ in range(rng.randint(3, 14))))
               for _ in range(rng.randint(0, 60))] for _ in range(7)]
    bound = LetterBound(groups)
    assert len(bound) == sum(map(len, groups))
    left_out = 0
    for _ in range(400):
        word = "".join(rng.choice(letters + "xz") for _ in range(rng.randint(3, 14)))
        cutoff = rng.choice((75.0, 80.0, 85.0, 90.0))
        lacking = [len(word) - _ratio_need(cutoff, len(word), len(min(g, key=len, default="")))
                   for g in groups]
        kept = bound.kept(word, 0, lacking)
        # joined: the same names in one list, or every name where kept gives up
        assert bound.joined(word, 0, lacking) == [
            n for group in (groups if kept is None else kept) for n in group]
        if kept is None:
            assert max(lacking) > MOST_LACKING
            continue
        for group, room, narrowed in zip(groups, lacking, kept, strict=True):
            assert narrowed == [n for n in group if n in set(narrowed)]  # the order kept
            for name in group:
                if len(name) != len(min(group, key=len)):
                    continue  # the bound was asked for that length's need only
                if fuzz.ratio(word, name) >= cutoff:
                    assert name in narrowed, (word, name, cutoff)
            left_out += len(group) - len(narrowed)
            assert room >= 0 or narrowed == []
        edits = bound.kept(word, 0, [2] * len(groups))
        assert edits is not None
        for group, narrowed in zip(groups, edits, strict=True):
            for name in group:
                if DamerauLevenshtein.distance(word, name) <= 2:
                    assert name in narrowed, (word, name)
    assert left_out > 1000  # the bound does leave names out


def test_a_name_lacking_letters_no_name_holds() -> None:
    bound = LetterBound([["abcdef", "abcdeg"], [], ["qqqqqq"]])
    assert bound.kept("abcdxy", 0, [2, 2, 2]) == [["abcdef", "abcdeg"], [], []]
    assert bound.kept("abxyzw", 0, [2, 2, 2]) == [[], [], []]
    assert bound.kept("qqqqqq", 0, [0, 0, 0]) == [[], [], ["qqqqqq"]]
    assert bound.kept("qqqqqq", 1, [0, 0]) == [[], ["qqqqqq"]]
    assert bound.kept("qqqqqq", 0, [-1, -1, -1]) == [[], [], []]
    assert bound.kept("abc", 0, [MOST_LACKING + 1, 0, 0]) is None
    with pytest.raises(ValueError, match="beyond"):
        bound.kept("abc", 2, [0, 0])


@pytest.mark.parametrize("ecosystem", [Ecosystem.PYPI, Ecosystem.NPM])
def test_the_shipped_indexes_answer_as_the_plain_search(ecosystem: Ecosystem) -> None:
    """Over the labelled squats, edits of the most installed names and random names,
    the bounded ratio and two-edit searches name the same target, the same way."""
    rng = random.Random(5)  # noqa: S311 - test data, not secrets
    ranked = popular(ecosystem)
    index = _loose(ecosystem, ranked)
    with LABELLED.open(newline="") as fh:
        names = [r["name"] for r in csv.DictReader(fh, delimiter="\t")
                 if r["ecosystem"] == ecosystem.value]
    names += [_mutated(rng, rng.choice(ranked[:20_000])) for _ in range(1500)]
    names += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz-")
                      for _ in range(rng.randint(4, 24))) for _ in range(300)]
    # listed names with affixes, as words and run into others (the contained rows)
    words = ["js", "node", "py", "x", "core", "lib", "utils", "react", "helper", "ab"]
    for _ in range(800):
        name = rng.choice(ranked[:30_000])
        sep = rng.choice(("", "-", "."))
        names.append(rng.choice((f"{rng.choice(words)}{sep}{name}",
                                 f"{name}{sep}{rng.choice(words)}",
                                 f"{rng.choice(words)}{sep}{name}{sep}{rng.choice(words)}")))
    found = contained = 0
    for name in names:
        norm = normalize(ecosystem, name)
        skel = skeleton(ecosystem, norm)
        if not skel:
            continue
        want_in = _plain_within(index, norm, skel)
        assert index._within(norm, skel) == want_in, name
        contained += want_in is not None
        want = _plain_ratio(index, skel, norm)
        assert index._ratio(skel, norm) == want, name
        want_two = _plain_two_edits(index, skel)
        assert index._two_edits(skel) == want_two, name
        found += (want is not None) + (want_two is not None)
    assert found > 500  # most edited names are found: the answers compared are real
    assert contained > 300


def test_the_contained_search_answers_as_every_substring_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of every reach and placement, over few letters (many names inside others,
    of equal lengths): the automaton and the table's look-ups of a far-reaching row
    find the substring asking every one finds, the longest, the first of them."""
    monkeypatch.setattr(contained, "CONTAINED_SET_RANK", 60)  # the 80 row: looked up
    rng = random.Random(17)  # noqa: S311 - test data, not secrets
    names = list(dict.fromkeys("".join(rng.choice("abcd") for _ in range(rng.randint(3, 8)))
                               for _ in range(600)))
    shapes = Shapes(ratios=(), two_edits=False, contained=(
        Contained(4, 40, ANY_RANK, "anywhere"), Contained(3, 80, 3, "one edge"),
        Contained(5, ANY_RANK, 2, "not whole words"), Contained(6, 300, 5, "one edge")))
    index = LooseIndex(Ecosystem.NPM, names, (), shapes)
    found = far = 0
    for _ in range(1500):
        norm = "".join(rng.choice("abcd--.") for _ in range(rng.randint(4, 16))).strip("-.")
        skel = skeleton(Ecosystem.NPM, norm)
        if not skel:
            continue
        want = _plain_within(index, norm, skel)
        assert index._within(norm, skel) == want, norm
        found += want is not None
        if want is not None and index._ranks[skeleton(Ecosystem.NPM, want.target)] >= 60:
            far += 1
    assert found > 300 and far > 30  # both paths answer, and often
