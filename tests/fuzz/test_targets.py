"""Every fuzz target for a bounded number of cases (the bench runs a million each)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from testbed.fuzz.targets import TARGETS

# Small enough that the folder runs in about a minute on a busy two-core machine;
# derandomized so a CI run is repeatable (bench.fuzz explores at random).
CI_EXAMPLES = 100


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target(name: str) -> None:
    target = TARGETS[name]
    run = settings(
        max_examples=CI_EXAMPLES, deadline=None, derandomize=True,
        database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(given(target.strategy)(target.check))
    run()
