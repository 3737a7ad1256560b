"""Property tests: version ordering and range evaluation agree with plain numeric order.

For release versions made of numbers only, PEP 440, semver and Maven all order
as tuples of integers do; ranges as policy files write them, and OSV event lists
as advisories publish them, must then contain exactly the versions that order
puts inside them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.policy.model import Ecosystem
from stockade.policy.osv import Affected, is_affected
from stockade.policy.versions import compare, parse_range

E = Ecosystem
ALL = (E.PYPI, E.NPM, E.MAVEN)
triples = st.tuples(*(st.integers(min_value=0, max_value=40),) * 3)


def text(v: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in v)


def sign(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return (a > b) - (a < b)


def between(eco: Ecosystem, low: tuple[int, ...], high: tuple[int, ...]) -> str:
    """``low`` included, ``high`` excluded, in the ecosystem's own syntax."""
    if eco is E.PYPI:
        return f">={text(low)},<{text(high)}"
    if eco is E.NPM:
        return f">={text(low)} <{text(high)}"
    return f"[{text(low)},{text(high)})"


@pytest.mark.parametrize("eco", ALL)
@given(a=triples, b=triples)
def test_compare_follows_numeric_order(eco: Ecosystem, a: tuple[int, ...],
                                       b: tuple[int, ...]) -> None:
    assert compare(eco, text(a), text(b)) == sign(a, b)
    assert compare(eco, text(b), text(a)) == -sign(a, b)


@pytest.mark.parametrize("eco", ALL)
@given(low=triples, high=triples, v=triples)
def test_half_open_range_holds_what_lies_between(eco: Ecosystem, low: tuple[int, ...],
                                                 high: tuple[int, ...],
                                                 v: tuple[int, ...]) -> None:
    low, high = min(low, high), max(low, high)
    if low == high:
        return  # an empty range is not something a policy writes
    assert parse_range(eco, between(eco, low, high)).contains(text(v)) == (low <= v < high)


@pytest.mark.parametrize("eco", ALL)
@given(exact=triples, v=triples)
def test_bare_version_means_that_version_only(eco: Ecosystem, exact: tuple[int, ...],
                                              v: tuple[int, ...]) -> None:
    assert parse_range(eco, text(exact)).contains(text(v)) == (v == exact)


@pytest.mark.parametrize("eco", ALL)
@given(points=st.lists(triples, min_size=2, max_size=6, unique=True), v=triples)
def test_osv_introduced_fixed_pairs(eco: Ecosystem, points: list[tuple[int, ...]],
                                    v: tuple[int, ...]) -> None:
    # introduced, fixed, introduced, fixed, ... in ascending order: the
    # affected set is the union of the half-open spans.
    points = sorted(points)
    if len(points) % 2:
        points = points[:-1]
    spans = list(zip(points[::2], points[1::2], strict=True))
    events = tuple(event for low, high in spans
                   for event in (("introduced", text(low)), ("fixed", text(high))))
    # Advisories do not promise event order; evaluation must not depend on it.
    shuffled = events[::-1]
    expected = any(low <= v < high for low, high in spans)
    for order in (events, shuffled):
        assert is_affected(eco, text(v), Affected(frozenset(), (order,))) == expected


@pytest.mark.parametrize("eco", ALL)
@given(last=triples, v=triples)
def test_osv_last_affected_includes_its_version(eco: Ecosystem, last: tuple[int, ...],
                                                v: tuple[int, ...]) -> None:
    events = (("introduced", "0"), ("last_affected", text(last)))
    assert is_affected(eco, text(v), Affected(frozenset(), (events,))) == (v <= last)


@given(v=triples)
def test_maven_trailing_zeros_do_not_matter(v: tuple[int, ...]) -> None:
    # Maven's ComparableVersion: 1.2 and 1.2.0 are the same version.
    assert compare(E.MAVEN, text(v), text(v) + ".0") == 0
    assert parse_range(E.MAVEN, f"[{text(v)}]").contains(text(v) + ".0")
