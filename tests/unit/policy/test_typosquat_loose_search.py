"""The loose search's deep shapes, searched bucket by bucket, find what one search over
every candidate finds: the same name, the first among equals."""

from __future__ import annotations

import random

from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.forms import skeleton
from stockade.policy.typosquat.loose import TWO_EDITS_MIN, LooseIndex, Ratio, Shapes, _bucket


def _all_ratio(index: LooseIndex, skel: str) -> tuple[str, float] | None:
    """One search over every candidate of every row (as the shape reads)."""
    n = len(skel)
    for at, row in enumerate(index.shapes.ratios):
        if n < row.min_len:
            continue
        share = row.cutoff / 100
        low, high = int(n * share / (2 - share)), int(n * (2 - share) / share) + 1
        keys = (f"^{skel[0]}", f"{skel[-1]}$") if row.ends else ("",)
        candidates = list(dict.fromkeys(s for m in range(low, high + 1) for k in keys
                                        for s in index._ratios.get(_bucket(at, m, k), ())))
        hit = process.extractOne(skel, candidates, scorer=fuzz.ratio,
                                 score_cutoff=row.cutoff) if candidates else None
        if hit is not None and hit[0] != skel:
            return hit[0], hit[1]
    return None


def _all_two_edits(index: LooseIndex, skel: str) -> str | None:
    if len(skel) < TWO_EDITS_MIN - 2:
        return None
    candidates = [o for n in range(len(skel) - 2, len(skel) + 3)
                  for end in (f"^{skel[:2]}{n}", f"{skel[-2:]}${n}")
                  for o in index._ends.get(end, ())]
    hit = process.extractOne(skel, candidates, scorer=DamerauLevenshtein.distance,
                             score_cutoff=2) if candidates else None
    return hit[0] if hit is not None and hit[0] != skel else None


def test_bucket_by_bucket_finds_the_first_best_of_all_candidates() -> None:
    rng = random.Random(3)  # noqa: S311 - test data, not secrets
    letters = "abcde"  # few letters: many names at the same ratio and distance
    names = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(6, 11)))
                    for _ in range(3000)})
    shapes = Shapes(two_edits=True, ratios=(Ratio(0, 400, 80.0), Ratio(8, 3000, 75.0,
                                                                       ends=True)),
                    contained=())
    index = LooseIndex(Ecosystem.PYPI, names, (), shapes)
    queries = ["".join(rng.choice(letters) for _ in range(rng.randint(5, 12)))
               for _ in range(600)] + names[:50]
    ratios = edits = 0
    for query in queries:
        skel = skeleton(Ecosystem.PYPI, query)
        want = _all_ratio(index, skel)
        got = index._ratio(skel)
        expected = (index._names[want[0]], f"similar spelling ({want[1]:.0f}%)") \
            if want is not None else None
        assert ((got.target, got.technique) if got is not None else None) == expected, query
        ratios += want is not None
        want_two = _all_two_edits(index, skel)
        got_two = index._two_edits(skel)
        assert (got_two.target if got_two else None) == \
            (index._names[want_two] if want_two else None), query
        edits += want_two is not None
    assert ratios > 50 and edits > 50  # the queries do find names, ties among them
