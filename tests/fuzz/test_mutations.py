"""The structured mutators make inputs their strategy could draw, and many different ones."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.proxy.ecosystems import maven_layout as ml
from stockade.proxy.ecosystems import pypi_pages as pp
from testbed.fuzz import mutations as m
from testbed.fuzz.targets import TARGETS

VALID: dict[str, Callable[[Any], bool]] = {
    "maven_roundtrip": m.valid_metadata,
    "pypi_roundtrip": m.valid_page,
}
CHAIN = 20  # mutations of mutations, as bench.fuzz's seeds are reused a million times


@pytest.mark.parametrize("name", sorted(VALID))
def test_mutants_are_valid_and_hold_the_property(name: str) -> None:
    target = TARGETS[name]
    valid = VALID[name]
    assert target.mutate is not None

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(target.strategy, target.strategy, st.randoms(use_true_random=False))
    def run(seed: Any, other: Any, rng: random.Random) -> None:
        # The predicate accepts what the strategy draws, so it is no stricter than it.
        assert valid(seed) and valid(other)
        value = seed
        for _ in range(CHAIN):
            value = target.mutate(value, other, rng)  # type: ignore[misc]
            assert valid(value), f"not a valid input: {value!r}"
            target.check(value)
    run()


@pytest.mark.parametrize("name", sorted(VALID))
def test_mutants_differ(name: str) -> None:
    """A mutator that returned its seed would fuzz one input a million times."""
    mutate = TARGETS[name].mutate
    assert mutate is not None
    rng = random.Random(7)  # noqa: S311 - a repeatable test, not a secret
    if name == "maven_roundtrip":
        seeds: list[Any] = [ml.Metadata("com.example", "demo", None, ["1.0", "2.0-SNAPSHOT"]),
                            ml.Metadata("com.example", "demo", None, [], "20240101000000")]
    else:
        files = tuple(pp.FileEntry(f, m.file_url(f), {"sha256": "0" * 64})
                      for f in ("a-1.0.zip", "b_2-0.1.tar.gz"))
        seeds = [pp.ProjectPage("demo", ()), pp.ProjectPage("demo", files)]
    seen = set()
    for _ in range(500):
        value = mutate(rng.choice(seeds), rng.choice(seeds), rng)
        seen.add(repr(value))
        if len(seeds) < 50:
            seeds.append(value)
    # a mutator returning its seeds would give a handful; these give 190 to 330 by seed
    assert len(seen) > 150


def test_valid_refuses_what_the_strategy_cannot_draw() -> None:
    good = ml.Metadata("com.example", "demo", None, ["1.0"])
    assert m.valid_metadata(good)
    assert not m.valid_metadata(ml.Metadata("com.example", "demo", None, ["1.0", "1.0"]))
    assert not m.valid_metadata(ml.Metadata("com.example", "demo", None, ["1.0 "]))
    entry = pp.FileEntry("a-1.0.zip", m.file_url("a-1.0.zip"), {"sha256": "0" * 64})
    assert m.valid_page(pp.ProjectPage("demo", (entry,)))
    assert not m.valid_page(pp.ProjectPage("demo", (entry, entry)))
    assert not m.valid_page(pp.ProjectPage("demo", (
        pp.FileEntry("a-1.0.zip", m.file_url("a-1.0.zip"), {"sha256": "0" * 64},
                     requires_python=" "),)))
