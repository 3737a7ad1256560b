"""Approvals: the file ``stockade approve`` and the web page write, the policy reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stockade.policy.approvals import ApprovalError, approve, end_of, in_force, load, parse
from stockade.policy.model import Ecosystem

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_approve_writes_an_entry_that_load_reads(tmp_path: Path) -> None:
    path = tmp_path / "approvals.yaml"
    made = approve(path, Ecosystem.PYPI, "Pytest_Playwrights", until="2026-12-31",
                   reason="our fork", by="alice", now=NOW)
    assert made.until == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    (read,) = load(path)
    assert read == made
    assert read.key == (Ecosystem.PYPI, "pytest-playwrights")
    assert read.describe() == "approved by alice until 2026-12-31: our fork"


def test_default_length_and_replacing_and_expiry(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "approvals.yaml"
    first = approve(path, Ecosystem.NPM, "expresss", now=NOW)
    assert first.until == NOW + timedelta(days=30)
    approve(path, Ecosystem.NPM, "expresss", until="2027-01-05", now=NOW)
    approve(path, Ecosystem.NPM, "lodahs", until="2026-12-04", now=NOW)
    assert [a.name for a in load(path)] == ["expresss", "lodahs"]
    later = NOW + timedelta(days=2)
    assert set(in_force(load(path), later)) == {(Ecosystem.NPM, "expresss")}
    approve(path, Ecosystem.NPM, "other", now=later)  # ended entries are dropped on write
    assert [a.name for a in load(path)] == ["expresss", "other"]


def test_concurrent_approvers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "approvals.yaml"
    names = [f"name{i}" for i in range(16)]
    threads = [threading.Thread(target=approve, args=(path, Ecosystem.PYPI, n),
                                kwargs={"now": NOW}) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.name for a in load(path)) == sorted(names)


def test_missing_file_holds_none(tmp_path: Path) -> None:
    assert load(tmp_path / "nothing.yaml") == []


@pytest.mark.parametrize(("text", "message"), [
    ("approvals: [1]", r"approvals\.0: an approval is a mapping"),
    ("approvals: [{ecosystem: cargo, name: x, until: 2027-01-01}]", r"approvals\.0\.ecosystem"),
    ("approvals: [{ecosystem: pypi, name: 'a b', until: 2027-01-01}]", r"approvals\.0\.name"),
    ("approvals: [{ecosystem: pypi, name: ab}]", r"until: missing"),
    ("approvals: [{ecosystem: pypi, name: ab, until: soon}]", r"not a date"),
    ("approvals: [{ecosystem: pypi, name: ab, until: 2027-01-01, who: x}]", "unknown keys"),
    ("- a list", "one key, approvals"),
    ("approvals: [", "not valid YAML"),
])
def test_bad_files_are_named(text: str, message: str) -> None:
    with pytest.raises(ApprovalError, match=message):
        parse(text, "approvals.yaml")


def test_bad_approvals_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ApprovalError, match="has passed"):
        approve(tmp_path / "a.yaml", Ecosystem.PYPI, "ab", until="2020-01-01", now=NOW)
    with pytest.raises(ApprovalError, match="not a valid"):
        approve(tmp_path / "a.yaml", Ecosystem.PYPI, "-bad-", now=NOW)
    assert not (tmp_path / "a.yaml").exists()


def test_end_of_a_naive_time_is_utc() -> None:
    assert end_of("2027-01-01T10:00:00") == datetime(2027, 1, 1, 10, tzinfo=UTC)
