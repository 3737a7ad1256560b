"""Per-team policy: the global policy plus the team's own, never looser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stockade.policy.engine import build_engine
from stockade.policy.file import PolicyError, parse_policy
from stockade.policy.model import (
    Decision,
    Ecosystem,
    Facts,
    PackageRef,
    ProjectFacts,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = {
    "rules": {
        "cooldown": {"min_age": "1d", "exempt_internal": False},
        "lists": {"allow": [{"ecosystem": "npm", "name": "react", "reason": "reviewed",
                             "tags": ["pci-reviewed"]}],
                  "deny": [{"ecosystem": "npm", "name": "evil", "reason": "malware"}]},
    },
    "teams": {
        "payments": {
            "required_tags": ["pci-reviewed"],
            "allow": [{"ecosystem": "npm", "name": "evil", "reason": "ours"},
                      {"ecosystem": "npm", "name": "lodash", "reason": "ours"}],
            "rules": {"cooldown": {"min_age": "14d"}},
        },
        "lax": {"rules": {"cooldown": {"min_age": "1h"}}},
    },
}


def _engine(policy: dict[str, object] = POLICY):  # type: ignore[no-untyped-def]
    return build_engine(parse_policy(yaml.safe_dump(policy), base_dir=Path("."),
                                     now=lambda: NOW))


def _aged(days: float) -> Facts:
    return Facts(upstream="npmjs", published_at=NOW - timedelta(days=days))


def test_no_team_and_an_unknown_team_get_the_global_policy() -> None:
    engine = _engine()
    assert engine.for_team(None) is engine
    assert engine.for_team("nobody") is engine
    assert engine.for_team("payments") is not engine
    assert engine.for_team("payments").revision != engine.revision
    assert engine.for_team("payments") is engine.for_team("payments")  # built once


@pytest.mark.parametrize(("team", "days", "decision"), [
    (None, 3, Decision.ALLOW),
    ("payments", 3, Decision.BLOCK),  # the team's longer cooldown
    ("payments", 20, Decision.ALLOW),
    ("lax", 0.5, Decision.BLOCK),  # a shorter team cooldown never loosens the global one
    ("lax", 3, Decision.ALLOW),
])
def test_a_team_cooldown_is_only_ever_stricter(team: str | None, days: float,
                                               decision: Decision) -> None:
    verdict = _engine().for_team(team).decide(PackageRef(Ecosystem.NPM, "react", "1.0.0"),
                                              _aged(days))
    assert verdict.decision is decision
    if team == "payments" and decision is Decision.BLOCK:
        assert "team payments" in verdict.reason


@pytest.mark.parametrize(("name", "team", "decision", "rule"), [
    ("react", "payments", Decision.ALLOW, "default"),  # global allow entry with the tag
    ("lodash", "payments", Decision.ALLOW, "default"),  # the team's own allow entry
    ("left-pad", "payments", Decision.BLOCK, "lists"),  # not tagged for payments
    ("left-pad", None, Decision.ALLOW, "default"),
    ("left-pad", "lax", Decision.ALLOW, "default"),
    ("evil", "payments", Decision.BLOCK, "lists"),  # the team's allow never lifts a deny
    ("evil", None, Decision.BLOCK, "lists"),
])
def test_team_tags_and_lists(name: str, team: str | None, decision: Decision,
                             rule: str) -> None:
    verdict = _engine().for_team(team).decide(PackageRef(Ecosystem.NPM, name), _aged(30))
    assert (verdict.decision, verdict.rule) == (decision, rule)
    if name == "evil":
        assert "malware" in verdict.reason


def test_a_bad_team_section_names_the_key() -> None:
    with pytest.raises(PolicyError, match=r"teams\.payments\.rules\.provenanse"):
        _engine({"teams": {"payments": {"rules": {"provenanse": {}}}}})
    with pytest.raises(PolicyError, match=r"teams\.bad name"):
        _engine({"teams": {"bad name": {}}})
    with pytest.raises(PolicyError, match=r"teams\.t\.deny\.0\.reason"):
        _engine({"teams": {"t": {"deny": [{"ecosystem": "npm", "name": "x"}]}}})


def test_a_team_can_require_provenance() -> None:
    engine = _engine({"teams": {"payments": {"rules": {"provenance": {
        "require_for": ["npm:*"]}}}}})
    ref = PackageRef(Ecosystem.NPM, "left-pad", "1.0.0")
    unclaimed = Facts(upstream="npmjs", provenance_claimed=False)
    assert engine.decide(ref, unclaimed).decision is Decision.ALLOW
    refused = engine.for_team("payments").decide(ref, unclaimed)
    assert (refused.decision, refused.rule) == (Decision.BLOCK, "provenance")
    assert "team payments" in refused.reason
    # where the global policy verified the file and found nothing, the same
    missing = Facts(upstream="npmjs", provenance=(ProvenanceResult(
        ProvenanceKind.ATTESTATION, ProvenanceStatus.MISSING, None, "none published"),))
    assert engine.decide(ref, missing).decision is Decision.ALLOW
    assert engine.for_team("payments").decide(ref, missing).decision is Decision.BLOCK
    other = PackageRef(Ecosystem.PYPI, "left-pad", "1.0.0")
    assert engine.for_team("payments").decide(other, unclaimed).decision is Decision.ALLOW
    with pytest.raises(PolicyError, match=r"teams\.payments\.rules\.provenance\.require_for"):
        _engine({"teams": {"payments": {"rules": {"provenance": {"require_for": [" "]}}}}})


OSV = Path(__file__).resolve().parents[2] / "fixtures" / "osv"


def _osv_engine(team_osv: dict[str, object]):  # type: ignore[no-untyped-def]
    return _engine({"rules": {"osv": {"paths": [str(OSV)], "min_severity": "critical"}},
                    "teams": {"payments": {"rules": {"osv": team_osv}}}})


@pytest.mark.parametrize(("team", "ref", "decision"), [
    (None, PackageRef(Ecosystem.NPM, "lodash", "4.17.20"), Decision.ALLOW),  # high
    ("payments", PackageRef(Ecosystem.NPM, "lodash", "4.17.20"), Decision.BLOCK),
    ("payments", PackageRef(Ecosystem.NPM, "lodash", "4.17.21"), Decision.ALLOW),  # fixed
    (None, PackageRef(Ecosystem.PYPI, "requests", "2.30.0"), Decision.ALLOW),  # moderate
    ("payments", PackageRef(Ecosystem.PYPI, "requests", "2.30.0"), Decision.BLOCK),  # by id
    ("payments", PackageRef(Ecosystem.MAVEN, "org.apache.logging.log4j:log4j-core",
                            "2.14.1"), Decision.BLOCK),  # critical: the global refusal
])
def test_a_team_osv_rule_refuses_at_a_lower_severity(
    team: str | None, ref: PackageRef, decision: Decision,
) -> None:
    engine = _osv_engine({"min_severity": "high", "block_ids": ["GHSA-j8r2-6x86-q33q"]})
    verdict = engine.for_team(team).decide(ref, Facts(upstream="u"))
    assert (verdict.decision, verdict.rule) == (
        decision, "osv" if decision is Decision.BLOCK else "default")
    if team == "payments" and ref.name != "org.apache.logging.log4j:log4j-core" \
            and decision is Decision.BLOCK:
        assert "team payments" in verdict.reason


def test_a_team_osv_rule_cannot_loosen_or_stand_alone() -> None:
    with pytest.raises(PolicyError, match=r"teams\.payments\.rules\.osv: min_severity: "
                                          r"'high' is looser than the global 'moderate'"):
        _engine({"rules": {"osv": {"paths": [str(OSV)], "min_severity": "moderate"}},
                 "teams": {"payments": {"rules": {"osv": {"min_severity": "high"}}}}})
    with pytest.raises(PolicyError, match=r"teams\.payments\.rules\.osv: needs the global"):
        _engine({"teams": {"payments": {"rules": {"osv": {"min_severity": "low"}}}}})
    with pytest.raises(PolicyError, match=r"teams\.payments\.rules\.osv\.ignore_ids"):
        _osv_engine({"ignore_ids": ["GHSA-jfh8-c2jp-5v3q"]})  # not a team's to accept


def _project(days: float, releases: int) -> Facts:
    return Facts(upstream="pypi", project=ProjectFacts(
        first_release=NOW - timedelta(days=days), releases=releases))


TYPO: dict[str, object] = {"typosquat": {}}  # the shipped popular names


@pytest.mark.parametrize(("team", "facts", "decision"), [
    (None, _project(2, 1), Decision.HOLD),  # young: held for everyone
    (None, _project(200, 5), Decision.WARN),  # older: allowed and recorded
    ("payments", _project(200, 5), Decision.HOLD),  # the team holds a year-old project
    ("payments", _project(400, 5), Decision.WARN),
    ("payments", _project(200, 12), Decision.WARN),  # too many releases even for the team
    (None, Facts(upstream="pypi", project=ProjectFacts()), Decision.WARN),  # age unknown
    ("payments", Facts(upstream="pypi", project=ProjectFacts()), Decision.HOLD),
])
def test_a_team_typosquat_loose_tier_holds_older_projects(
    team: str | None, facts: Facts, decision: Decision,
) -> None:
    engine = _engine({"rules": TYPO, "teams": {"payments": {"rules": {"typosquat": {
        "loose": {"young": "365d", "max_releases": 10, "on_missing": "hold"}}}}}})
    ref = PackageRef(Ecosystem.PYPI, "flask-cors-2", "1.0")
    verdict = engine.for_team(team).decide(ref, facts)
    assert (verdict.decision, verdict.rule) == (decision, "typosquat")
    if team == "payments" and decision is Decision.HOLD:
        assert "team payments" in verdict.reason
        assert verdict.until is not None or facts.project == ProjectFacts()
    other = PackageRef(Ecosystem.PYPI, "numpy", "1.0")  # no likeness: nothing to say
    assert engine.for_team(team).decide(other, facts).decision is Decision.ALLOW


@pytest.mark.parametrize(("team_rule", "key"), [
    ({"loose": {"young": "7d"}}, r"loose\.young: 7 days is shorter than the global 30 days"),
    ({"loose": {"max_releases": 1}}, r"loose\.max_releases: 1 is fewer than the global 3"),
    ({"strong": {"on_missing": "hold"}}, r"strong\.on_missing: 'hold' is looser than the "
                                         r"global 'refuse'"),
    ({"loose": {"on_missing": "allow"}, "strong": {}}, None),  # the same: allowed
])
def test_a_team_typosquat_section_cannot_loosen(team_rule: dict[str, object],
                                                key: str | None) -> None:
    policy = {"rules": TYPO, "teams": {"payments": {"rules": {"typosquat": team_rule}}}}
    if key is None:
        assert _engine(policy).for_team("payments") is not None
        return
    with pytest.raises(PolicyError, match=r"teams\.payments\.rules\.typosquat\." + key):
        _engine(policy)


def test_a_team_typosquat_section_applies_where_the_global_one_is_off() -> None:
    engine = _engine({"rules": {"typosquat": {"enabled": False}}, "teams": {"payments": {
        "rules": {"typosquat": {"loose": {"young": "7d"}}}}}})  # nothing to loosen
    ref = PackageRef(Ecosystem.PYPI, "flask-cors-2", "1.0")
    assert engine.decide(ref, _project(2, 1)).decision is Decision.ALLOW
    held = engine.for_team("payments").decide(ref, _project(2, 1))
    assert (held.decision, held.rule) == (Decision.HOLD, "typosquat")
    assert engine.for_team("payments").decide(ref, _project(10, 1)).decision \
        is Decision.WARN


def test_an_approval_lifts_a_team_typosquat_hold(tmp_path: Path) -> None:
    from stockade.policy.approvals import approve

    policy = {"rules": {"typosquat": {"approvals": "approvals.yaml"}},
              "teams": {"payments": {"rules": {"typosquat": {"loose": {"young": "365d"}}}}}}

    def engine():  # type: ignore[no-untyped-def]
        return build_engine(parse_policy(yaml.safe_dump(policy), base_dir=tmp_path,
                                         now=lambda: NOW))

    ref = PackageRef(Ecosystem.PYPI, "flask-cors-2", "1.0")
    assert engine().for_team("payments").decide(ref, _project(200, 2)).decision \
        is Decision.HOLD
    approve(tmp_path / "approvals.yaml", Ecosystem.PYPI, "flask-cors-2",
            until=NOW + timedelta(days=7), reason="our fork", by="ops", now=NOW)
    assert engine().for_team("payments").decide(ref, _project(200, 2)).decision \
        is Decision.ALLOW
