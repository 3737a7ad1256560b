"""Each rule on real-world cases, in tables."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from stockade.policy.model import Decision, Ecosystem, Facts, Mode, PackageRef
from stockade.policy.osv import OsvDatabase
from stockade.policy.rules.age import CooldownRule
from stockade.policy.rules.base import Entry
from stockade.policy.rules.install import InstallScriptsRule
from stockade.policy.rules.licenses import LicenseRule
from stockade.policy.rules.lists import AllowlistOnly, ListEntry, ListsRule
from stockade.policy.rules.vulns import OsvRule
from stockade.policy.versions import parse_range

E = Ecosystem
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OSV = Path(__file__).resolve().parents[2] / "fixtures" / "osv"


def entry(eco: Ecosystem, name: str, versions: str | None = None) -> Entry:
    return Entry(eco, name, parse_range(eco, versions) if versions else None)


class TestLists:
    rule = ListsRule(
        deny=[
            ListEntry(entry(E.NPM, "event-stream", "3.3.6"), "flatmap-stream backdoor",
                      "security"),
            ListEntry(entry(E.NPM, "ua-parser-js", "0.7.29 || 0.8.0 || 1.0.0"), "hijacked"),
            ListEntry(entry(E.PYPI, "ctx"), "hijacked project"),
            ListEntry(entry(E.NPM, "colors", "1.4.1"), "sabotaged", expires=date(2020, 1, 1)),
        ],
        now=lambda: NOW,
    )

    @pytest.mark.parametrize(("ref", "refused"), [
        (PackageRef(E.NPM, "event-stream", "3.3.6"), True),
        (PackageRef(E.NPM, "event-stream", "3.3.5"), False),
        (PackageRef(E.NPM, "event-stream"), False),  # one bad version never refuses the name
        (PackageRef(E.NPM, "ua-parser-js", "0.7.29"), True),
        (PackageRef(E.NPM, "ua-parser-js", "0.7.30"), False),
        (PackageRef(E.PYPI, "CTX"), True),
        (PackageRef(E.PYPI, "ctx", "0.2.6"), True),
        (PackageRef(E.NPM, "colors", "1.4.1"), False),  # the entry expired
    ])
    def test_deny(self, ref: PackageRef, refused: bool) -> None:
        verdict = self.rule.evaluate(ref, Facts())
        assert (verdict is not None and verdict.blocks) is refused
        if refused:
            assert verdict is not None
            assert "deny list" in verdict.reason

    def test_expired_entries_are_reported(self) -> None:
        (expired,) = self.rule.expired()
        assert expired.entry.pattern == "colors"

    def test_allowlist_only_needs_tags(self) -> None:
        rule = ListsRule(
            allow=[ListEntry(entry(E.PYPI, "requests"), "reviewed", tags=frozenset({"reviewed"})),
                   ListEntry(entry(E.PYPI, "flask"), "pending", tags=frozenset())],
            allowlist_only=AllowlistOnly(True, frozenset({"reviewed"})), now=lambda: NOW)
        assert rule.evaluate(PackageRef(E.PYPI, "requests", "2.32.3"), Facts()) is None
        flask = rule.evaluate(PackageRef(E.PYPI, "flask"), Facts())
        assert flask is not None
        assert "allowlist" in flask.reason
        assert rule.evaluate(PackageRef(E.PYPI, "acme-x"), Facts(internal=True)) is None

    def test_audit_mode_records_without_refusing(self) -> None:
        rule = ListsRule(deny=[ListEntry(entry(E.PYPI, "ctx"), "hijacked")], mode=Mode.AUDIT)
        verdict = rule.evaluate(PackageRef(E.PYPI, "ctx"), Facts())
        assert verdict is not None
        assert verdict.decision is Decision.BLOCK
        assert verdict.audit_only
        assert not verdict.blocks


class TestCooldown:
    rule = CooldownRule(min_age=timedelta(days=3), now=lambda: NOW,
                        exempt=[entry(E.NPM, "lodash", "4.17.22")])

    @pytest.mark.parametrize(("published", "first_seen", "refused"), [
        (NOW - timedelta(hours=2), None, True),
        (NOW - timedelta(days=4), None, False),
        (NOW - timedelta(days=10), NOW - timedelta(hours=1), True),  # first seen just now
        (None, None, True),  # fail closed
    ])
    def test_age(self, published: datetime | None, first_seen: datetime | None,
                 refused: bool) -> None:
        verdict = self.rule.evaluate(PackageRef(E.NPM, "chalk", "5.6.1"),
                                     Facts(published_at=published, first_seen_at=first_seen))
        assert (verdict is not None and verdict.blocks) is refused

    def test_reason_reads_well(self) -> None:
        verdict = self.rule.evaluate(PackageRef(E.NPM, "chalk", "5.6.1"),
                                     Facts(published_at=NOW - timedelta(hours=2)))
        assert verdict is not None
        assert verdict.reason == ("chalk@5.6.1 was published 2 hours ago; versions younger "
                                  "than 3 days are held back")

    def test_exemptions(self) -> None:
        young = Facts(published_at=NOW - timedelta(hours=1))
        assert self.rule.evaluate(PackageRef(E.NPM, "lodash", "4.17.22"), young) is None
        assert self.rule.evaluate(PackageRef(E.NPM, "lodash", "4.17.23"), young) is not None
        internal = Facts(published_at=NOW - timedelta(hours=1), internal=True)
        assert self.rule.evaluate(PackageRef(E.NPM, "@acme/x", "1.0.0"), internal) is None
        assert self.rule.evaluate(PackageRef(E.NPM, "chalk"), Facts()) is None  # names pass

    def test_cutoff(self) -> None:
        rule = CooldownRule(cutoff=datetime(2025, 9, 8, tzinfo=UTC), now=lambda: NOW)
        after = Facts(published_at=datetime(2025, 9, 8, 13, 16, tzinfo=UTC))
        before = Facts(published_at=datetime(2025, 9, 1, tzinfo=UTC))
        assert rule.evaluate(PackageRef(E.NPM, "chalk", "5.6.1"), after) is not None
        assert rule.evaluate(PackageRef(E.NPM, "chalk", "5.6.0"), before) is None


class TestInstallScripts:
    rule = InstallScriptsRule(allow=[entry(E.NPM, "esbuild")], hide_sdist_where_wheel=True)

    def test_npm_install_scripts(self) -> None:
        scripted = Facts(has_install_script=True)
        verdict = self.rule.evaluate(PackageRef(E.NPM, "node-ipc", "10.1.1"), scripted)
        assert verdict is not None
        assert verdict.blocks
        assert self.rule.evaluate(PackageRef(E.NPM, "esbuild", "0.24.0"), scripted) is None
        assert self.rule.evaluate(PackageRef(E.NPM, "left-pad", "1.3.0"), Facts()) is None

    def test_pypi_sdists(self) -> None:
        only_sdist = Facts(is_sdist=True, has_wheel=False)
        warned = self.rule.evaluate(PackageRef(E.PYPI, "ctx", "0.2.6"), only_sdist)
        assert warned is not None
        assert warned.decision is Decision.WARN
        both = Facts(is_sdist=False, has_wheel=True)
        hidden = self.rule.evaluate(
            PackageRef(E.PYPI, "six", "1.16.0", "six-1.16.0.tar.gz"), both)
        assert hidden is not None
        assert hidden.blocks
        assert self.rule.evaluate(
            PackageRef(E.PYPI, "six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl"), both) is None


class TestLicenses:
    @pytest.mark.parametrize(("allow", "deny", "expression", "refused"), [
        (["MIT"], [], "MIT", False),
        (["MIT"], [], "MIT OR GPL-3.0-only", False),
        (["MIT"], [], "MIT AND GPL-3.0-only", True),
        (["MIT", "Apache-2.0"], [], "Apache-2.0 WITH LLVM-exception", False),
        ([], ["AGPL-3.0-only"], "AGPL-3.0-only", True),
        ([], ["AGPL-3.0-only"], "MIT OR AGPL-3.0-only", False),
        ([], ["GPL-2.0-only"], "GPL-2.0-only WITH Classpath-exception-2.0", True),
    ])
    def test_expressions(self, allow: list[str], deny: list[str], expression: str,
                         refused: bool) -> None:
        rule = LicenseRule(allow, deny)
        verdict = rule.evaluate(PackageRef(E.NPM, "x", "1.0.0"), Facts(license=expression))
        assert (verdict is not None and verdict.blocks) is refused

    def test_unknown(self) -> None:
        rule = LicenseRule(unknown=Decision.BLOCK)
        for value in (None, "see LICENSE file", ""):
            verdict = rule.evaluate(PackageRef(E.NPM, "x", "1.0.0"), Facts(license=value))
            assert verdict is not None
            assert verdict.blocks


class TestOsv:
    db = OsvDatabase.load([OSV])
    rule = OsvRule(lambda: TestOsv.db, min_severity="high")

    @pytest.mark.parametrize(("ref", "refused"), [
        (PackageRef(E.NPM, "lodash", "4.17.20"), True),  # high
        (PackageRef(E.NPM, "lodash", "4.17.21"), False),  # fixed
        (PackageRef(E.PYPI, "requests", "2.30.0"), False),  # moderate < high
        (PackageRef(E.MAVEN, "org.apache.logging.log4j:log4j-core", "2.14.1"), True),
        (PackageRef(E.MAVEN, "org.apache.logging.log4j:log4j-core", "2.12.4"), False),
        (PackageRef(E.NPM, "chalk", "5.6.1"), True),  # MAL
        (PackageRef(E.NPM, "chalk", "5.6.2"), False),
        (PackageRef(E.PYPI, "0requests", "0.0.1"), True),
        (PackageRef(E.MAVEN, "io.github.leetcrunch:scribejava-core"), True),  # every version
    ])
    def test_fixture_records(self, ref: PackageRef, refused: bool) -> None:
        verdict = self.rule.evaluate(ref, Facts())
        assert (verdict is not None and verdict.blocks) is refused

    def test_ids_and_ignores(self) -> None:
        by_id = OsvRule(lambda: self.db, min_severity=None, block_ids={"CVE-2023-32681"})
        assert by_id.evaluate(PackageRef(E.PYPI, "requests", "2.30.0"), Facts()) is not None
        ignored = OsvRule(lambda: self.db, min_severity="high",
                          ignore_ids={"GHSA-35jh-r3h4-6jhm"})
        assert ignored.evaluate(PackageRef(E.NPM, "lodash", "4.17.20"), Facts()) is None

    def test_zip_export_and_malformed_records(self, tmp_path: Path) -> None:
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w") as archive:
            archive.writestr("GHSA-1.json", json.dumps({
                "id": "GHSA-test", "summary": "bad", "database_specific": {"severity": "HIGH"},
                "affected": [{"package": {"ecosystem": "npm", "name": "x"}, "ranges": [
                    {"type": "SEMVER", "events": [{"introduced": "1.0.0"},
                                                  {"last_affected": "1.2.0"}]}]}]}))
            archive.writestr("broken.json", "{not json")
            archive.writestr("noid.json", json.dumps({"affected": []}))
        path = tmp_path / "all.zip"
        path.write_bytes(raw.getvalue())
        db = OsvDatabase.load([path])
        assert db.skipped == 2
        rule = OsvRule(lambda: db, min_severity="high")
        assert rule.evaluate(PackageRef(E.NPM, "x", "1.2.0"), Facts()) is not None
        assert rule.evaluate(PackageRef(E.NPM, "x", "1.2.1"), Facts()) is None
        assert rule.evaluate(PackageRef(E.NPM, "x", "0.9.0"), Facts()) is None
