"""``rules.provenance`` and ``rules.republished`` in the policy file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.policy.engine import build_engine
from stockade.policy.file import PolicyError, parse_policy
from stockade.policy.model import (
    BuildIdentity,
    Ecosystem,
    Facts,
    Mode,
    PackageRef,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
)
from stockade.policy.rules.provenance import DowngradeAction, ProvenanceRule, Requirement
from stockade.policy.rules.republished import RepublishedRule

FULL = """
rules:
  provenance:
    mode: audit
    signatures: require
    attestations: off
    require_for: ["npm:@acme/*", "pypi:acme-*", "maven:com.acme:*"]
    identities:
      - {ecosystem: npm, name: "sigstore", repository: "https://github.com/sigstore/sigstore-js"}
      - {ecosystem: pypi, name: sampleproject, repository: pypa/sampleproject,
         workflow: release.yml, publisher: GitHub}
    downgrade: off
    trusted_root: root/trusted_root.json
    npm_keys: npm-keys.json
    pgp_keys:
      - {group: "org.apache.*", keys: [keys/apache.asc]}
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("root/trusted_root.json", "npm-keys.json", "keys/apache.asc"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    return tmp_path


def test_trust_files_are_watched_and_part_of_the_revision(files: Path) -> None:
    before = parse_policy(FULL, base_dir=files)
    rule = before.provenance
    assert rule is not None
    assert set(rule.trust_files) == {files / "root/trusted_root.json", files / "npm-keys.json",
                                     files / "keys/apache.asc"}
    engine = build_engine(before)
    assert set(rule.trust_files) <= set(engine.sources)  # the reloader watches them
    old_id = rule.trust_id(files / "npm-keys.json")

    (files / "npm-keys.json").write_text('{"keys": []}')  # the policy text is the same
    after = parse_policy(FULL, base_dir=files)
    assert after.revision != before.revision
    assert after.provenance is not None
    assert after.provenance.trust_id(files / "npm-keys.json") != old_id
    assert after.provenance.trust_id(files / "keys/apache.asc") == \
        rule.trust_id(files / "keys/apache.asc")
    assert rule.trust_id(None) == "production"


def test_every_key_is_read(files: Path) -> None:
    policy = parse_policy(FULL, base_dir=files)
    rule = policy.provenance
    assert isinstance(rule, ProvenanceRule)
    assert rule in policy.rules
    assert rule.mode is Mode.AUDIT
    assert rule.signatures is Requirement.REQUIRE
    assert rule.attestations is Requirement.OFF  # YAML's bare `off` is false: read as "off"
    assert rule.downgrade is DowngradeAction.OFF
    assert [str(p) for p in rule.require_for] == ["npm:@acme/*", "pypi:acme-*",
                                                  "maven:com.acme:*"]
    assert rule.identities[1].publisher is Publisher.GITHUB
    assert rule.identities[1].workflow == "release.yml"
    assert rule.trusted_root == files / "root/trusted_root.json"
    assert rule.npm_keys == files / "npm-keys.json"
    commons = PackageRef(Ecosystem.MAVEN, "org.apache.commons:commons-lang3", "3.14.0")
    assert rule.pgp_keys_for(commons) == (files / "keys/apache.asc",)


def test_defaults_of_the_section(tmp_path: Path) -> None:
    rule = parse_policy("rules: {provenance: {}}", base_dir=tmp_path).provenance
    assert rule is not None
    assert (rule.signatures, rule.attestations, rule.downgrade, rule.mode) == (
        Requirement.VERIFY, Requirement.VERIFY, DowngradeAction.REFUSE, Mode.ENFORCE)
    assert rule.trusted_root is None and rule.npm_keys is None


def test_republished_is_always_on_and_provenance_only_when_asked(tmp_path: Path) -> None:
    policy = parse_policy("", base_dir=tmp_path)
    assert policy.provenance is None
    (republished,) = [r for r in policy.rules if r.name == "republished"]
    assert isinstance(republished, RepublishedRule) and republished.mode is Mode.ENFORCE
    audit = parse_policy("rules: {republished: {mode: audit}}", base_dir=tmp_path)
    assert next(r for r in audit.rules if isinstance(r, RepublishedRule)).mode is Mode.AUDIT
    whole = parse_policy("mode: audit", base_dir=tmp_path)
    assert next(r for r in whole.rules if isinstance(r, RepublishedRule)).mode is Mode.AUDIT


def test_the_default_engine_refuses_a_republished_file() -> None:
    engine = build_engine(None)
    ref = PackageRef(Ecosystem.PYPI, "sampleproject", "4.0.0", "sampleproject-4.0.0.tar.gz")
    verdict = engine.decide(ref, Facts(digests={"sha256": "b" * 64},
                                       admitted_digests={"sha256": "a" * 64}))
    assert verdict.blocks and verdict.rule == "republished"
    assert verdict.refusal_phrase().endswith("(rule republished)")


def test_engine_refuses_a_build_from_another_repository(files: Path) -> None:
    engine = build_engine(parse_policy(
        "rules:\n  provenance:\n    identities:\n      - {ecosystem: npm, name: sigstore, "
        "repository: sigstore/sigstore-js}\n", base_dir=files))
    evil = BuildIdentity(Publisher.GITHUB, "https://github.com/evil/sigstore-js")
    verdict = engine.decide(
        PackageRef(Ecosystem.NPM, "sigstore", "1.0.0"),
        Facts(provenance=(ProvenanceResult(ProvenanceKind.ATTESTATION,
                                           ProvenanceStatus.VERIFIED, evil),)))
    assert verdict.blocks
    assert verdict.refusal_phrase() == (
        "Blocked by stockade: sigstore 1.0.0 was built from https://github.com/evil/sigstore-js,"
        " not https://github.com/sigstore/sigstore-js (rule provenance)")


@pytest.mark.parametrize(("text", "message"), [
    ("rules: {provenance: {signatures: maybe}}", "rules.provenance.signatures"),
    ("rules: {provenance: {attestations: on}}", "rules.provenance.attestations"),
    ("rules: {provenance: {downgrade: allow}}", "rules.provenance.downgrade"),
    ("rules: {provenance: {mode: sometimes}}", "rules.provenance.mode"),
    ("rules: {provenance: {require_for: ['npm:']}}", "rules.provenance.require_for.0"),
    ("rules: {provenance: {identities: [{ecosystem: npm, name: x}]}}",
     "rules.provenance.identities.0.repository"),
    ("rules: {provenance: {identities: [{ecosystem: npm, name: x, repository: sigstore}]}}",
     "rules.provenance.identities.0.repository: 'sigstore' is not a repository"),
    ("rules: {provenance: {identities: [{ecosystem: npm, name: x, repository: a/b, "
     "publisher: circleci}]}}", "rules.provenance.identities.0.publisher"),
    ("rules: {provenance: {identities: [{ecosystem: cargo, name: x, repository: a/b}]}}",
     "rules.provenance.identities.0.ecosystem"),
    ("rules: {provenance: {pgp_keys: [{group: 'org.apache.*', keys: []}]}}",
     "rules.provenance.pgp_keys.0.keys"),
    ("rules: {provenance: {pgp_keys: [{group: 'org.apache.*', keys: [absent.asc]}]}}",
     "rules.provenance.pgp_keys.0.keys.0: absent.asc: no such file"),
    ("rules: {provenance: {trusted_root: absent.json}}",
     "rules.provenance.trusted_root: absent.json: no such file"),
    ("rules: {provenance: {npm_keys: absent.json}}", "rules.provenance.npm_keys"),
    ("rules: {provenance: {requires: []}}", "rules.provenance.requires"),
    ("rules: {republished: {mode: off}}", "rules.republished.mode"),
    ("rules: {republished: {enabled: false}}", "rules.republished.enabled"),
])
def test_errors_name_the_key(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy\.yaml: ") as info:
        parse_policy(text, base_dir=tmp_path, source="policy.yaml")
    assert message in str(info.value)
