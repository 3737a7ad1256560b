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
