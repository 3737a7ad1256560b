"""The loose search's deep shapes, searched bucket by bucket, find what one search over
every candidate finds: the same name, the first among equals."""

from __future__ import annotations

import random

import pytest
from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.rules.typosquat import TyposquatRule
from stockade.policy.typosquat.forms import skeleton
from stockade.policy.typosquat.loose import (
    ONE_EDIT_RANK,
    TWO_EDITS_MIN,
    LooseIndex,
    Ratio,
    Shapes,
    _bucket,
)


def _all_ratio(index: LooseIndex, skel: str) -> tuple[str, float] | None:
    """One search over every candidate of every row (as the shape reads)."""
    n = len(skel)
    for at, row in enumerate(index.shapes.ratios):
        if n < (row.shortest or row.min_len):
            continue
        share = row.cutoff / 100
        low, high = int(n * share / (2 - share)), int(n * (2 - share) / share) + 1
        if row.both_ends:
            keys: tuple[str, ...] = (f"^{skel[:2]}{skel[-1]}$",)
        else:
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
    shapes = Shapes(two_edits=True, ratios=(
        Ratio(0, 400, 80.0), Ratio(8, 3000, 75.0, ends=True, shortest=6),
        Ratio(10, 3000, 70.0, shortest=8, both_ends=True)), contained=())
    index = LooseIndex(Ecosystem.PYPI, names, (), shapes)
    queries = ["".join(rng.choice(letters) for _ in range(rng.randint(5, 12)))
               for _ in range(600)] + names[:50]
    ratios = edits = 0
    for query in queries:
        skel = skeleton(Ecosystem.PYPI, query)
        want = _all_ratio(index, skel)
        got = index._ratio(skel, query)
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


def test_a_slip_of_a_name_beyond_the_one_edit_rank() -> None:
    """A neighbouring key or an added letter inside a name, its ends kept, of a listed
    name beyond the one-edit index: found only where the shape is on, and only so."""
    filler = [f"filler{i:05d}name" for i in range(ONE_EDIT_RANK)]
    names = [*filler, "umbrellajs", "xgplayer"]
    on = LooseIndex(Ecosystem.NPM, names, set(names), Shapes(ratios=(), contained=(),
                                                           two_edits=False, slip_min=8))
    off = LooseIndex(Ecosystem.NPM, names, set(names), Shapes(ratios=(), contained=(),
                                                            two_edits=False))
    for name, target in (("umbrellaks", "umbrellajs"), ("xigplayer", "xgplayer"),
                         ("umbrelkajs", "umbrellajs")):
        found = on.match(name, deep=True)
        assert found is not None and found.target == target, name
        assert off.match(name, deep=True) is None, name
        assert on.match(name, deep=False) is None, name  # the deep search only
    for name in ("umbrellajx",   # the last letter changed
                 "ymbrellajs",   # the first
                 "umbrellaqs",   # not a neighbouring key of j
                 "umbrellajs",   # the listed name itself
                 "xgplayr"):     # a letter dropped, not added
        assert on.match(name, deep=True) is None, name
    short = LooseIndex(Ecosystem.NPM, [*filler, "xgplay"], (), Shapes(
        ratios=(), contained=(), two_edits=False, slip_min=8))
    assert short.match("xgpolay", deep=True) is None  # under slip_min letters


def test_two_popular_names_run_together_with_a_plural_dropped() -> None:
    names = ["requests", "pandas", "numpy", "flask", "ui"]
    on = LooseIndex(Ecosystem.PYPI, names, set(names), Shapes(
        ratios=(), contained=(), two_edits=False, joined_rank=1_000))
    off = LooseIndex(Ecosystem.PYPI, names, set(names), Shapes(
        ratios=(), contained=(), two_edits=False))
    found = on.match("pandarequest", deep=True)
    assert found is not None and found.target == "requests"  # both lost it: the better ranked
    found = on.match("numpy-request", deep=True)
    assert found is not None and found.target == "requests"
    assert off.match("pandarequest", deep=True) is None
    assert on.match("pandarequest", deep=False) is None  # the deep search only
    for name in ("pandasrequests",  # neither lost its plural: another shape's
                 "flaskui",         # a part under joined_min letters
                 "pandarecipe"):    # a part not listed
        assert on.match(name, deep=True) is None, name
    far = LooseIndex(Ecosystem.PYPI, names, set(names), Shapes(
        ratios=(), contained=(), two_edits=False, joined_rank=1))
    assert far.match("pandarequest", deep=True) is None  # pandas beyond the rank


@pytest.mark.parametrize("protected", [(), ("requests-toolbelt-extra", "acme-http")])
def test_the_deep_search_after_the_quick_one_finds_what_one_search_finds(
        protected: tuple[str, ...]) -> None:
    """A young name's deep search leaves out the quick likenesses its quick search
    found none of: the two in turn find what one search of every index finds, with
    the policy's own names an index before the shipped one's or without them."""
    rule = TyposquatRule(protected={Ecosystem.PYPI: list(protected)})
    assert len(rule.loose_index(Ecosystem.PYPI)) == (2 if protected else 1)
    names = ["requestz", "requests-2", "requests-toolbelt-extras", "acme-htp", "acmehttp",
             "reqeusts-tool", "djangoo-rest", "numpyy", "matlibplot", "pandasrequest",
             "flask-requests-helper", "beautifulsoup-4", "scikitlearn", "tensorflw"]
    for name in names:
        whole = rule._loose_match(Ecosystem.PYPI, name, deep=True)
        quick = rule._loose_quick[Ecosystem.PYPI](name)
        assert rule._loose_any(Ecosystem.PYPI, name) == whole, name
        if quick is None:
            assert rule._loose_deep[Ecosystem.PYPI](name) == whole, name
        else:
            assert quick == whole, name
    assert any(rule._loose_any(Ecosystem.PYPI, n) is not None for n in names)


def test_a_short_name_against_longer_ones_and_long_names_keeping_both_ends() -> None:
    """A ratio row's ``shortest`` looks up names shorter than its protected ones (letters
    dropped); a row keeping both ends finds only names sharing the first two letters
    and the last, and leaves npm scopes out on both sides."""
    filler = [f"filler{i:05d}name" for i in range(1_000)]  # the long ones beyond them
    names = ["web3-core", *filler, "ethers-multicall", "@acme/ethers-multicall-x"]
    rows = (Ratio(8, 1_000, 80.0, ends=True, shortest=6),
            Ratio(14, 10**9, 85.0, shortest=11, both_ends=True))
    on = LooseIndex(Ecosystem.NPM, names, set(names), Shapes(ratios=rows, contained=(),
                                                           two_edits=False))
    off = LooseIndex(Ecosystem.NPM, names, set(names), Shapes(
        ratios=(Ratio(8, 1_000, 80.0, ends=True),), contained=(), two_edits=False))
    for name, target in (("wb3cor", "web3-core"), ("ether-multcal", "ethers-multicall")):
        found = on.match(name, deep=True)
        assert found is not None and found.target == target, name
        assert off.match(name, deep=True) is None, name
        assert on.match(name, deep=False) is None, name  # the deep search only
    for name in ("wbcor",            # under the row's shortest
                 "ether-multcax",    # the last letter changed: another bucket
                 "@evil/ether-multcal"):  # a scoped name: left out of the long row
        assert on.match(name, deep=True) is None, name


def test_a_marker_dropped_or_added_with_a_version() -> None:
    names = ["pysmb", "lxml", "python-ldap", "pyfar"]
    shapes = Shapes(ratios=(), contained=(), two_edits=False,
                    markers=("python", "py", "lib"), marker_rank=3)
    on = LooseIndex(Ecosystem.PYPI, names, set(names), shapes)
    off = LooseIndex(Ecosystem.PYPI, names, set(names), Shapes(
        ratios=(), contained=(), two_edits=False))
    for name, target in (("smb", "pysmb"), ("ldap", "python-ldap"),
                         ("liblxml3", "lxml"), ("lxml-py-2.1", "lxml")):
        found = on.match(name, deep=True)
        assert found is not None and found.target == target, name
        assert off.match(name, deep=True) is None, name
        assert on.match(name, deep=False) is None, name  # the deep search only
    for name in ("far",        # pyfar is beyond the marker rank
                 "sm",         # under three letters
                 "libsmb3",    # smb is no protected name
                 "liblxml"):   # no version: the strong tier's (an affix), not this one's
        assert on.match(name, deep=True) is None, name


def test_a_version_digit_dropped_at_any_rank() -> None:
    names = ["smb2", "tls3", "abc", "d3"]  # too short for the one-edit index
    on = LooseIndex(Ecosystem.NPM, names, set(names), Shapes(
        ratios=(), contained=(), two_edits=False, version_dropped=True))
    off = LooseIndex(Ecosystem.NPM, names, set(names), Shapes(
        ratios=(), contained=(), two_edits=False))
    for name, target in (("smb", "smb2"), ("tls", "tls3")):
        found = on.match(name, deep=True)
        assert found is not None and found.target == target, name
        assert off.match(name, deep=True) is None, name
        assert on.match(name, deep=False) is None, name  # the deep search only
    for name in ("d",      # under three letters
                 "smb3",   # a digit changed: another shape's (one edit), not this one's
                 "ab"):    # abc is no versioned name
        assert on.match(name, deep=True) is None, name
