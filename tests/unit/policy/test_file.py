"""The policy file: the example loads, errors name the key, modes and warnings apply."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockade.policy.engine import build_engine
from stockade.policy.file import PolicyError, load_policy, parse_policy
from stockade.policy.model import Ecosystem, Facts, PackageRef

EXAMPLE = Path(__file__).resolve().parents[3] / "stockade" / "policy" / "examples" / "policy.yaml"
OSV = Path(__file__).resolve().parents[2] / "fixtures" / "osv"


def test_example_policy_loads_with_every_rule() -> None:
    policy = load_policy(EXAMPLE)
    assert [r.name for r in policy.rules] == [
        "lists", "typosquat", "dependency-confusion", "cooldown", "osv", "install-scripts",
        "licenses", "provenance", "republished"]
    engine = build_engine(policy)
    verdict = engine.decide(PackageRef(Ecosystem.NPM, "event-stream", "3.3.6"), Facts())
    assert verdict.blocks
    assert verdict.rule == "lists"


@pytest.mark.parametrize(("text", "message"), [
    ("rules: {cooldown: {min_age: 3x}}", "rules.cooldown.min_age"),
    ("rules: {lists: {deny: [{ecosystem: npm, name: x}]}}", "rules.lists.deny.0.reason"),
    ("rules: {lists: {deny: [{ecosystem: cargo, name: x, reason: r}]}}",
     "rules.lists.deny.0.ecosystem"),
    ("rules: {typo: {}}", "rules.typo"),
    ("mode: sometimes", "mode"),
    ("rules: {lists: {deny: [{ecosystem: pypi, name: x, reason: r, versions: '>=>1'}]}}",
     "rules.lists.deny.0.versions"),
    ("rules: {osv: {paths: [missing/]}}", "rules.osv.paths"),
    ("rules: [", "not valid YAML"),
])
def test_errors_name_the_key(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy\.yaml: ") as info:
        parse_policy(text, base_dir=tmp_path, source="policy.yaml")
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_whole_policy_in_audit_mode(tmp_path: Path) -> None:
    policy = parse_policy(
        "mode: audit\nrules: {lists: {deny: [{ecosystem: pypi, name: ctx, reason: hijacked}]}}",
        base_dir=tmp_path)
    verdict = build_engine(policy).decide(PackageRef(Ecosystem.PYPI, "ctx"), Facts())
    assert verdict.audit_only
    assert not verdict.blocks
    assert verdict.rule == "lists"


def test_expired_entries_warn_and_osv_paths_are_relative(tmp_path: Path) -> None:
    (tmp_path / "osv").symlink_to(OSV)
    policy = parse_policy(
        "rules:\n"
        "  lists: {deny: [{ecosystem: npm, name: colors, reason: r, expires: 2020-01-01}]}\n"
        "  osv: {paths: [osv]}\n",
        base_dir=tmp_path, now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    assert any("expired" in w for w in policy.warnings)
    engine = build_engine(policy)
    assert engine.decide(PackageRef(Ecosystem.NPM, "chalk", "5.6.1"), Facts()).rule == "osv"


def test_typosquat_and_confusion_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    default = build_engine(None, internal={Ecosystem.NPM: ("@acme/*",)})
    assert default.decide(PackageRef(Ecosystem.PYPI, "reqeusts"), Facts()).rule == "typosquat"
    verdict = default.decide(PackageRef(Ecosystem.NPM, "acme-utils"), Facts(upstream="npmjs"))
    assert verdict.rule == "dependency-confusion"
    off = parse_policy("rules: {typosquat: {enabled: false}}", base_dir=tmp_path)
    assert not build_engine(off).decide(PackageRef(Ecosystem.PYPI, "reqeusts"), Facts()).blocks


def test_revision_changes_with_the_file(tmp_path: Path) -> None:
    a = parse_policy("rules: {licenses: {deny: [MIT]}}", base_dir=tmp_path)
    b = parse_policy("rules: {licenses: {deny: [ISC]}}", base_dir=tmp_path)
    assert a.revision != b.revision
    assert build_engine(a).revision != build_engine(b).revision
