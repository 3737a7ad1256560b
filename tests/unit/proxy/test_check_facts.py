"""``stockade check`` with facts lines and ``stockade approve``."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stockade.policy.approvals import load
from stockade.proxy.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    path = tmp_path / "stockade.yaml"
    path.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "data")},
                                    "policy": {"file": str(tmp_path / "policy.yaml")}}))
    return path


def _line(name: str, days: int, releases: int) -> str:
    first = (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    return json.dumps({"name": name, "version": None, "first_release": first,
                       "releases": releases, "owners": ["x"], "summary": "a thing",
                       "repository": "https://github.com/x/y"})


def test_facts_lines_are_decided_as_if_published_today(
        capsys: pytest.CaptureFixture[str], config: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join([
        _line("rich-click-3", 2, 1), _line("rich-click-3", 900, 40), "rich-click-3"])))
    code = main(["check", "pypi", "-", "--config", str(config), "--json"])
    held, old, bare = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert held["decision"] == "hold" and held["target"] == "rich-click"
    until = datetime.fromisoformat(held["until"])
    assert timedelta(days=27) < until - datetime.now(UTC) < timedelta(days=29)
    assert old["decision"] == "warn" and "until" not in old
    assert bare["decision"] == "allow"  # the name alone: as before
    assert code == 1  # a hold refuses


@pytest.mark.parametrize(("line", "message"), [
    ('{"name": "x", "releases": -1}', "releases: expected a count"),
    ('{"name": "x", "first_release": "soon"}', "first_release: 'soon' is not"),
    ('{"name": "x", "owners": "me"}', "owners: expected a list"),
    ('{"name": "x", "stars": 3}', "unknown keys"),
    ('{"name": ', "not a JSON object"),
])
def test_a_bad_facts_line_is_an_error(capsys: pytest.CaptureFixture[str], config: Path,
                                      line: str, message: str) -> None:
    assert main(["check", "pypi", line, "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_approve_writes_the_file_the_policy_names(
        capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code = main(["approve", "pypi", "rich-click-3", "--until", "2099-01-31", "--reason",
                 "reviewed", "--by", "bob", "--config", str(config)])
    assert code == 0
    assert "approved by bob until 2099-01-31: reviewed" in capsys.readouterr().out
    (approval,) = load(config.parent / "approvals.yaml")
    assert approval.name == "rich-click-3"
    assert main(["check", "pypi", _line("rich-click-3", 2, 1), "--config", str(config),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "allow"


def test_approve_says_what_is_wrong(capsys: pytest.CaptureFixture[str], config: Path,
                                    tmp_path: Path) -> None:
    assert main(["approve", "pypi", "x", "--until", "2001-01-01", "--config",
                 str(config)]) == 2
    assert "has passed" in capsys.readouterr().err
    (tmp_path / "policy.yaml").write_text("rules: {}\n")
    assert main(["approve", "pypi", "x", "--config", str(config)]) == 2
    assert "rules.typosquat.approvals names no file" in capsys.readouterr().err
