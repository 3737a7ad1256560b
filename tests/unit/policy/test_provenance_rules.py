"""The provenance and republished rules on tables of facts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockade.policy.model import (
    BuildIdentity,
    Decision,
    Ecosystem,
    Facts,
    Mode,
    PackageRef,
    ProvenanceHistory,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
)
from stockade.policy.rules import republished
from stockade.policy.rules.provenance import (
    MAX_REASON,
    DowngradeAction,
    IdentityEntry,
    NamePattern,
    PgpGroup,
    ProvenanceRule,
    ReleaseProvenance,
    Requirement,
    history_with_verified,
    normalize_repository,
    provenance_history,
)
from stockade.policy.rules.republished import RepublishedRule, changed_digest

E = Ecosystem
K = ProvenanceKind
S = ProvenanceStatus
SIGSTORE = PackageRef(E.NPM, "sigstore", "1.0.0")
GOOD = BuildIdentity(Publisher.GITHUB, "https://github.com/sigstore/sigstore-js",
                     ".github/workflows/release.yml", "refs/tags/v1.0.0")
EVIL = BuildIdentity(Publisher.GITHUB, "https://github.com/evil/sigstore-js",
                     ".github/workflows/release.yml")


def result(kind: ProvenanceKind, status: ProvenanceStatus,
           identity: BuildIdentity | None = None, detail: str = "") -> ProvenanceResult:
    return ProvenanceResult(kind, status, identity, detail or f"{kind} {status}")


SIG_OK = result(K.SIGNATURE, S.VERIFIED)
ATT_OK = result(K.ATTESTATION, S.VERIFIED, GOOD)


def facts(*results: ProvenanceResult, claimed: bool | None = None,
          before: ProvenanceHistory | None = None) -> Facts:
    return Facts(provenance=tuple(results), provenance_claimed=claimed,
                 provenance_before=before)


IDENTITY = IdentityEntry(E.NPM, "sigstore", "https://github.com/sigstore/sigstore-js")
DEFAULT = ProvenanceRule()
REQUIRE = ProvenanceRule(signatures=Requirement.REQUIRE, attestations=Requirement.REQUIRE)
OFF = ProvenanceRule(signatures=Requirement.OFF, attestations=Requirement.OFF,
                     downgrade=DowngradeAction.OFF)
ACME = ProvenanceRule(require_for=(NamePattern.parse("npm:@acme/*"),
                                   NamePattern.parse("acme-*")))
PINNED = ProvenanceRule(identities=(IDENTITY,))
WARN_DOWNGRADE = ProvenanceRule(downgrade=DowngradeAction.WARN)
PGP = ProvenanceRule(pgp_keys=(PgpGroup("org.apache.*", (Path("keys/apache.asc"),)),))
BEFORE = ProvenanceHistory("0.9.0")
BEFORE_VERIFIED = ProvenanceHistory("0.9.0", verified=True)
ACME_REF = PackageRef(E.NPM, "@acme/billing", "2.0.0")
COMMONS = PackageRef(E.MAVEN, "org.apache.commons:commons-lang3", "3.14.0")


@pytest.mark.parametrize(("rule", "ref", "given", "decision", "says"), [
    # verified or absent provenance under the default settings passes
    (DEFAULT, SIGSTORE, facts(SIG_OK, ATT_OK), None, None),
    (DEFAULT, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.MISSING)), None, None),
    (DEFAULT, SIGSTORE, facts(), None, None),
    # bad ones refuse under verify
    (DEFAULT, SIGSTORE, facts(result(K.SIGNATURE, S.INVALID, detail="does not verify")),
     Decision.BLOCK, "bad npm registry signature: does not verify"),
    (DEFAULT, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.INVALID)), Decision.BLOCK,
     "fails verification"),
    (DEFAULT, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.MISMATCH)), Decision.BLOCK,
     "does not match the artifact"),
    # unverifiable is served under verify, and recorded
    (DEFAULT, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.UNVERIFIABLE, detail="old")),
     Decision.WARN, "cannot check: old"),
    (DEFAULT, SIGSTORE, facts(result(K.SIGNATURE, S.UNVERIFIABLE)), Decision.WARN,
     "signature provenance stockade cannot check"),
    # off ignores everything
    (OFF, SIGSTORE, facts(result(K.SIGNATURE, S.INVALID), result(K.ATTESTATION, S.MISMATCH)),
     None, None),
    # require refuses missing and unverifiable too
    (REQUIRE, SIGSTORE, facts(SIG_OK, ATT_OK), None, None),
    (REQUIRE, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.MISSING, detail="none")),
     Decision.BLOCK, "has no verified provenance (missing: none)"),
    (REQUIRE, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.UNVERIFIABLE)), Decision.BLOCK,
     "attestations: require"),
    (REQUIRE, SIGSTORE, facts(SIG_OK), Decision.BLOCK, "none found"),
    (REQUIRE, SIGSTORE, facts(ATT_OK, result(K.SIGNATURE, S.MISSING)), Decision.BLOCK,
     "no verified npm registry signature"),
    (REQUIRE, PackageRef(E.PYPI, "sampleproject", "4.0.0"), facts(ATT_OK), None, None),
    # require_for: the listed names only, in their ecosystems, whatever the setting
    (ACME, ACME_REF, facts(SIG_OK), Decision.BLOCK, "requires it for npm:@acme/*"),
    (ACME, ACME_REF, facts(SIG_OK, ATT_OK), None, None),
    (ACME, PackageRef(E.PYPI, "Acme_Billing", "1.0"), facts(), Decision.BLOCK,
     "requires it for acme-*"),
    (ACME, PackageRef(E.PYPI, "@acme/billing", "1.0"), facts(), None, None),
    (ACME, SIGSTORE, facts(), None, None),
    (ProvenanceRule(attestations=Requirement.OFF,
                    require_for=(NamePattern.parse("npm:@acme/*"),)),
     ACME_REF, facts(result(K.ATTESTATION, S.INVALID)), Decision.BLOCK, "fails verification"),
    # identities: a verified build from elsewhere is an account takeover
    (PINNED, SIGSTORE, facts(SIG_OK, ATT_OK), None, None),
    (PINNED, SIGSTORE, facts(SIG_OK, result(K.ATTESTATION, S.VERIFIED, EVIL)), Decision.BLOCK,
     "sigstore 1.0.0 was built from https://github.com/evil/sigstore-js, not "
     "https://github.com/sigstore/sigstore-js"),
    (PINNED, SIGSTORE, facts(SIG_OK), Decision.BLOCK,
     "allows only builds from https://github.com/sigstore/sigstore-js"),
    (PINNED, SIGSTORE, facts(result(K.ATTESTATION, S.UNVERIFIABLE)), Decision.BLOCK,
     "has no verified provenance (unverifiable"),
    (PINNED, PackageRef(E.NPM, "other", "1.0.0"), facts(result(K.ATTESTATION, S.VERIFIED, EVIL)),
     None, None),
    (ProvenanceRule(identities=(IdentityEntry(E.NPM, "sigstore", "sigstore/sigstore-js.git",
                                              workflow="publish.yml"),)),
     SIGSTORE, facts(ATT_OK), Decision.BLOCK,
     "was built by workflow .github/workflows/release.yml, not publish.yml"),
    (ProvenanceRule(identities=(IdentityEntry(E.NPM, "sigstore", "sigstore/sigstore-js",
                                              publisher=Publisher.GITLAB),)),
     SIGSTORE, facts(ATT_OK), Decision.BLOCK, "was built through github, not gitlab"),
    (ProvenanceRule(identities=(IDENTITY, IdentityEntry(E.NPM, "sigstore", "evil/sigstore-js"))),
     SIGSTORE, facts(result(K.ATTESTATION, S.VERIFIED, EVIL)), None, None),
    # downgrade: refused, warned or off; unverifiable after claims only is no downgrade
    (DEFAULT, SIGSTORE, facts(SIG_OK, before=BEFORE), Decision.BLOCK,
     "sigstore 1.0.0 has no verified provenance, but 0.9.0, published before it, had "
     "provenance (as the upstream says)"),
    (DEFAULT, SIGSTORE, facts(SIG_OK, ATT_OK, before=BEFORE), None, None),
    (WARN_DOWNGRADE, SIGSTORE, facts(SIG_OK, before=BEFORE_VERIFIED), Decision.WARN,
     "(verified by stockade)"),
    (OFF, SIGSTORE, facts(SIG_OK, before=BEFORE), None, None),
    (DEFAULT, SIGSTORE, facts(result(K.ATTESTATION, S.UNVERIFIABLE), before=BEFORE),
     Decision.WARN, "cannot check"),
    (DEFAULT, SIGSTORE, facts(result(K.ATTESTATION, S.UNVERIFIABLE), before=BEFORE_VERIFIED),
     Decision.BLOCK, "had provenance (verified by stockade)"),
    # Maven: groups with keys need a verified OpenPGP signature, others are not checked
    (PGP, COMMONS, facts(result(K.PGP, S.VERIFIED)), None, None),
    (PGP, COMMONS, facts(result(K.PGP, S.MISSING)), Decision.BLOCK,
     "has no OpenPGP signature, and the policy requires one by the keys for org.apache.*"),
    (PGP, COMMONS, facts(), Decision.BLOCK, "has no OpenPGP signature"),
    (PGP, COMMONS, facts(result(K.PGP, S.MISMATCH, detail="signed by key ABCD")),
     Decision.BLOCK, "an OpenPGP signature that is mismatch: signed by key ABCD"),
    (PGP, PackageRef(E.MAVEN, "com.example:lib", "1.0"), facts(), None, None),
    (REQUIRE, COMMONS, facts(), None, None),
])
def test_provenance_decisions(rule: ProvenanceRule, ref: PackageRef, given: Facts,
                              decision: Decision | None, says: str | None) -> None:
    verdict = rule.evaluate(ref, given)
    if decision is None:
        assert verdict is None, verdict
        return
    assert verdict is not None
    assert verdict.rule == "provenance"
    assert verdict.decision is decision
    assert says is not None and says in verdict.reason
    assert len(verdict.reason) <= MAX_REASON


@pytest.mark.parametrize(("rule", "ref", "given", "refused"), [
    # metadata only (provenance not gathered): decided on the upstream's claim
    (REQUIRE, SIGSTORE, Facts(provenance_claimed=False), True),
    (REQUIRE, SIGSTORE, Facts(provenance_claimed=True), False),
    (REQUIRE, SIGSTORE, Facts(), False),
    (PINNED, SIGSTORE, Facts(provenance_claimed=False), True),
    (ACME, ACME_REF, Facts(provenance_claimed=False), True),
    (DEFAULT, SIGSTORE, Facts(provenance_claimed=False, provenance_before=BEFORE), True),
    (DEFAULT, SIGSTORE, Facts(provenance_claimed=True, provenance_before=BEFORE), False),
    (DEFAULT, SIGSTORE, Facts(provenance_claimed=False), False),
    (REQUIRE, PackageRef(E.NPM, "sigstore"), Facts(provenance_claimed=False), False),
])
def test_metadata_only_decisions(rule: ProvenanceRule, ref: PackageRef, given: Facts,
                                 refused: bool) -> None:
    verdict = rule.evaluate(ref, given)
    assert (verdict is not None and verdict.blocks) is refused


def test_audit_mode_records_without_refusing() -> None:
    rule = ProvenanceRule(identities=(IDENTITY,), mode=Mode.AUDIT)
    verdict = rule.evaluate(SIGSTORE, facts(result(K.ATTESTATION, S.VERIFIED, EVIL)))
    assert verdict is not None and verdict.decision is Decision.BLOCK
    assert verdict.audit_only and not verdict.blocks


def test_long_details_keep_the_reason_short() -> None:
    verdict = DEFAULT.evaluate(SIGSTORE, facts(result(K.ATTESTATION, S.INVALID,
                                                      detail="x" * 1000)))
    assert verdict is not None
    assert len(verdict.reason) == MAX_REASON and verdict.reason.endswith("...")


@pytest.mark.parametrize(("a", "b", "same"), [
    ("https://github.com/sigstore/sigstore-js", "sigstore/sigstore-js", True),
    ("https://github.com/sigstore/sigstore-js", "sigstore/sigstore-js.git", True),
    ("git+https://github.com/Sigstore/Sigstore-JS.git", "sigstore/sigstore-js", True),
    ("git@github.com:sigstore/sigstore-js.git", "https://www.github.com/sigstore/sigstore-js/",
     True),
    ("https://github.com/sigstore/sigstore-js", "evil/sigstore-js", False),
    ("https://gitlab.com/sigstore/sigstore-js", "sigstore/sigstore-js", False),
    ("https://gitlab.com/group/sub/project", "gitlab.com/group/sub/project", True),
])
def test_repositories_compare_normalised(a: str, b: str, same: bool) -> None:
    assert (normalize_repository(a) == normalize_repository(b)) is same


@pytest.mark.parametrize("text", ["sigstore", "https://github.com/only-owner", ""])
def test_a_repository_needs_owner_and_name(text: str) -> None:
    assert normalize_repository(text) is None
    with pytest.raises(ValueError, match="is not a repository"):
        IdentityEntry(E.NPM, "x", text)


@pytest.mark.parametrize(("text", "ecosystem", "pattern"), [
    ("npm:@acme/*", E.NPM, "@acme/*"),
    ("pypi:acme-*", E.PYPI, "acme-*"),
    ("maven:com.acme:*", E.MAVEN, "com.acme:*"),
    ("com.acme:*", None, "com.acme:*"),
    ("@acme/*", None, "@acme/*"),
])
def test_require_for_prefixes(text: str, ecosystem: Ecosystem | None, pattern: str) -> None:
    parsed = NamePattern.parse(text)
    assert (parsed.ecosystem, parsed.pattern) == (ecosystem, pattern)


def test_maven_patterns_match_group_and_artifact() -> None:
    pattern = NamePattern.parse("maven:com.acme:*")
    assert pattern.matches(PackageRef(E.MAVEN, "com.acme:billing", "1.0"))
    assert not pattern.matches(PackageRef(E.MAVEN, "com.acmex:billing", "1.0"))


def test_pgp_keys_for_a_group() -> None:
    assert PGP.pgp_keys_for(COMMONS) == (Path("keys/apache.asc"),)
    assert PGP.pgp_keys_for(PackageRef(E.MAVEN, "com.example:lib", "1.0")) == ()


def day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


def test_provenance_history_orders_by_publish_time() -> None:
    history = provenance_history({
        "1.0.0": ReleaseProvenance(day(1), claimed=False),
        "1.1.0": ReleaseProvenance(day(2), claimed=True),
        "1.2.0": ReleaseProvenance(day(3), claimed=True, verified=True),
        "0.9.9": ReleaseProvenance(day(4), claimed=False),  # a backport, published last
        "1.3.0": ReleaseProvenance(day(4), claimed=True),  # same instant: not "before"
        "2.0.0": ReleaseProvenance(None, claimed=False),
    })
    assert history["1.0.0"] is None
    assert history["1.1.0"] is None
    assert history["1.2.0"] == ProvenanceHistory("1.1.0", verified=False)
    assert history["0.9.9"] == ProvenanceHistory("1.2.0", verified=True)
    assert history["1.3.0"] == ProvenanceHistory("1.2.0", verified=True)
    assert history["2.0.0"] is None


def test_history_counts_versions_stockade_verified() -> None:
    facts = {
        "1.0.0": Facts(published_at=day(1), provenance_claimed=False),  # verified once
        "1.1.0": Facts(published_at=day(2), provenance_claimed=True),
        "1.2.0": Facts(published_at=day(3), provenance_claimed=False),
        "2.0.0": Facts(published_at=day(4), provenance_claimed=False),
        "3.0.0": Facts(published_at=None, provenance_claimed=False),
    }
    assert history_with_verified("1.2.0", facts, {"1.0.0"}) == \
        ProvenanceHistory("1.1.0", verified=True)
    assert history_with_verified("2.0.0", facts, {"1.0.0", "1.2.0"}) == \
        ProvenanceHistory("1.2.0", verified=True)
    assert history_with_verified("2.0.0", facts, set()) == \
        ProvenanceHistory("1.1.0", verified=False)
    assert history_with_verified("1.0.0", facts, {"1.0.0"}) is None
    assert history_with_verified("3.0.0", facts, {"1.0.0"}) is None
    assert history_with_verified("9.9.9", facts, {"1.0.0"}) is None


class TestRepublished:
    rule = RepublishedRule()
    ref = PackageRef(E.PYPI, "sampleproject", "4.0.0", "sampleproject-4.0.0.tar.gz")
    old = "0ace7980f82c5815ede4cd7bf9f6693684cec2ae47b9b7ade9add533b8627c6b"
    new = "9bb1add04b1b4e182be6b0b80931593f7a291eb49d69b4fd728a5d4cbcdc4bd3"

    @pytest.mark.parametrize(("admitted", "now", "refused"), [
        (None, {"sha256": new}, False),  # never admitted: nothing to compare
        ({"sha256": old}, {"sha256": old}, False),
        ({"sha256": old}, {"sha256": old.upper()}, False),
        ({"sha256": old}, {"sha256": new}, True),
        ({"sha256": old, "md5": "a" * 32}, {"sha256": new}, True),
        ({"sha1": "b" * 40}, {"sha256": new}, False),  # no algorithm in common
        ({"SHA-256": old}, {"sha256": new}, True),
        ({"sha256": old}, {}, False),
    ])
    def test_table(self, admitted: dict[str, str] | None, now: dict[str, str],
                   refused: bool) -> None:
        verdict = self.rule.evaluate(self.ref, Facts(digests=now, admitted_digests=admitted))
        assert (verdict is not None and verdict.blocks) is refused

    def test_reason_is_short_and_evidence_full(self) -> None:
        verdict = self.rule.evaluate(self.ref, Facts(digests={"sha256": self.new},
                                                     admitted_digests={"sha256": self.old}))
        assert verdict is not None
        assert verdict.rule == "republished"
        assert verdict.reason == (
            "sampleproject-4.0.0.tar.gz of sampleproject 4.0.0 changed after stockade admitted "
            "it: sha256 0ace7980f82c then, 9bb1add04b1b now (republished with other bytes)")
        assert self.old not in verdict.reason
        assert dict(verdict.evidence) == {"algorithm": "sha256", "admitted_digest": self.old,
                                          "new_digest": self.new}
        assert verdict.refusal_phrase().startswith("Blocked by stockade: sampleproject-4.0.0")

    def test_names_are_not_judged(self) -> None:
        assert self.rule.evaluate(PackageRef(E.PYPI, "sampleproject"),
                                  Facts(digests={"sha256": self.new},
                                        admitted_digests={"sha256": self.old})) is None

    def test_strongest_differing_algorithm_is_reported(self) -> None:
        change = changed_digest({"sha1": "a" * 40, "sha512": "b" * 128},
                                {"sha1": "c" * 40, "sha512": "d" * 128})
        assert change is not None and change[0] == "sha512"

    @pytest.mark.parametrize(("admitted", "now", "changed"), [
        # an npm tarball: admitted with a sha256 its packument does not publish
        ({"sha512": "b" * 128, "sha1": "a" * 40, "sha256": "e" * 64},
         {"sha512": "b" * 128, "sha1": "a" * 40}, None),
        ({"sha512": "b" * 128, "sha1": "a" * 40, "sha256": "e" * 64},
         {"sha512": "d" * 128, "sha1": "a" * 40}, "sha512"),
        ({"sha512": "b" * 128, "sha256": "e" * 64}, {"sha512": "b" * 128, "sha1": "a" * 40},
         None),
        # names or values not in their one form: compared as ever
        ({"SHA-512": "B" * 128, "sha256": "e" * 64}, {"sha512": "b" * 128}, None),
        ({"sha512": "b" * 128, "sha-512": "c" * 128}, {"sha512": "b" * 128}, "sha512"),
        ({"sha1": "A" * 40, "md5": "f" * 32}, {"sha1": "a" * 40, "md5": "0" * 32}, "md5"),
    ])
    def test_superset_of_digests(self, admitted: dict[str, str], now: dict[str, str],
                                 changed: str | None) -> None:
        change = changed_digest(admitted, now)
        assert (None if change is None else change[0]) == changed

    def test_agreeing_digests_are_not_put_in_canonical_form(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        # decided on every warm request of an npm tarball: no map built per request
        def refuse(digests: object) -> dict[str, str]:
            raise AssertionError("canonical maps built")
        monkeypatch.setattr(republished, "_canonical", refuse)
        assert changed_digest({"sha512": "b" * 128, "sha1": "a" * 40, "sha256": "e" * 64},
                              {"sha512": "b" * 128, "sha1": "a" * 40}) is None

    def test_audit_mode(self) -> None:
        verdict = RepublishedRule(Mode.AUDIT).evaluate(
            self.ref, Facts(digests={"sha256": self.new}, admitted_digests={"sha256": self.old}))
        assert verdict is not None and verdict.audit_only
