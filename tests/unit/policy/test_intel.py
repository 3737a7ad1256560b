"""What a decision does where intel is missing or stale (``intel:`` in the policy)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stockade.policy.engine import build_engine
from stockade.policy.file import PolicyError, parse_policy
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef
from stockade.policy.osv import OsvDatabase

OSV = Path(__file__).resolve().parents[2] / "fixtures" / "osv"
_NEWEST = OsvDatabase.load([OSV]).newest  # the newest record's "modified"
assert _NEWEST is not None
NEWEST: datetime = _NEWEST
REF = PackageRef(Ecosystem.PYPI, "somepkg", "1.0")


def _decide(text: str, facts: Facts, *, now: datetime) -> tuple[Decision, str]:
    policy = parse_policy(text, base_dir=OSV.parent, now=lambda: now)
    verdict = build_engine(policy).decide(REF, facts)
    return verdict.decision, verdict.rule


OSV_RULE = "rules: {osv: {paths: [osv]}}\n"


@pytest.mark.parametrize(("intel", "age", "expected"), [
    ("", timedelta(days=900), Decision.ALLOW),  # no intel settings: as before
    ("intel: {osv_max_age: 2d}\n", timedelta(days=1), Decision.ALLOW),
    ("intel: {osv_max_age: 2d}\n", timedelta(days=3), Decision.WARN),  # default: warn
    ("intel: {osv_max_age: 2d, on_stale: block}\n", timedelta(days=3), Decision.BLOCK),
    ("intel: {osv_max_age: 2d, on_stale: allow}\n", timedelta(days=3), Decision.ALLOW),
])
def test_stale_osv_data(intel: str, age: timedelta, expected: Decision) -> None:
    decision, rule = _decide(intel + OSV_RULE, Facts(), now=NEWEST + age)
    assert decision is expected
    if expected is not Decision.ALLOW:
        assert rule == "osv"


def test_no_osv_data_at_all_is_stale(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    policy = parse_policy("intel: {osv_max_age: 2d, on_stale: block}\n"
                          "rules: {osv: {paths: [empty]}}\n", base_dir=tmp_path)
    verdict = build_engine(policy).decide(REF, Facts())
    assert verdict.decision is Decision.BLOCK
    assert "no OSV data is loaded" in verdict.reason


@pytest.mark.parametrize(("text", "expected"), [
    ("rules: {cooldown: {min_age: 1d}}\n", Decision.BLOCK),  # fail closed, as before
    ("intel: {on_missing: allow}\nrules: {cooldown: {min_age: 1d}}\n", Decision.ALLOW),
    ("intel: {on_missing: warn}\nrules: {cooldown: {min_age: 1d}}\n", Decision.WARN),
    # the rule's own switch wins over the general one
    ("intel: {on_missing: allow}\nrules: {cooldown: {min_age: 1d, allow_undated: false}}\n",
     Decision.BLOCK),
    ("intel: {on_missing: block}\nrules: {licenses: {deny: [GPL-3.0-only]}}\n",
     Decision.BLOCK),
    ("intel: {on_missing: block}\nrules: {licenses: {deny: [GPL-3.0-only], unknown: warn}}\n",
     Decision.WARN),
])
def test_missing_facts_follow_on_missing(text: str, expected: Decision) -> None:
    decision, _ = _decide(text, Facts(), now=NEWEST)
    assert decision is expected


def test_intel_errors_name_the_key() -> None:
    with pytest.raises(PolicyError, match=r"intel\.on_stale"):
        parse_policy("intel: {on_stale: sometimes}\n", base_dir=OSV.parent)
