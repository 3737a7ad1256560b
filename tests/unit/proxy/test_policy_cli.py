"""``stockade check`` and ``stockade log verify`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stockade.policy.model import Ecosystem
from stockade.proxy.cli import main
from stockade.proxy.policy_cli import split_spec


@pytest.mark.parametrize(
    ("eco", "spec", "expected"),
    [
        (Ecosystem.NPM, "@types/node@20.1.0", ("@types/node", "20.1.0")),
        (Ecosystem.NPM, "@types/node", ("@types/node", None)),
        (Ecosystem.NPM, "left-pad@1.3.0", ("left-pad", "1.3.0")),
        (Ecosystem.PYPI, "requests", ("requests", None)),
        (Ecosystem.PYPI, "requests@2.32.3", ("requests", "2.32.3")),
        (Ecosystem.MAVEN, "com.google.guava:guava:33.0.0-jre",
         ("com.google.guava:guava", "33.0.0-jre")),
        (Ecosystem.MAVEN, "com.google.guava:guava", ("com.google.guava:guava", None)),
    ],
)
def test_split_spec(eco: Ecosystem, spec: str, expected: tuple[str, str | None]) -> None:
    assert split_spec(eco, spec) == expected


def test_check_json_contract(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOCKADE_CONFIG", raising=False)
    config = tmp_path / "stockade.yaml"
    config.write_text(f"storage: {{path: {tmp_path / 'data'}}}\n")
    code = main(["check", "pypi", "requests@2.32.3", "--config", str(config), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ecosystem", "name", "version", "decision", "rule", "reason", "target"}
    assert out["name"] == "requests"
    assert out["version"] == "2.32.3"
    assert out["decision"] in ("allow", "warn", "block")
    assert code == (1 if out["decision"] == "block" else 0)


def test_log_verify_reports_intact_and_tampered(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    from stockade.proxy.decisionlog import GENESIS, record_hash

    record = {"seq": 0, "time": "t", "ecosystem": "npm", "name": "x", "version": None,
              "filename": None, "decision": "block", "rule": "lists", "reason": "r",
              "target": None, "audit": False, "client": "", "request_id": "",
              "policy_revision": "p", "prev": GENESIS}
    record["hash"] = record_hash(record)
    log = tmp_path / "decisions.jsonl"
    log.write_text(json.dumps(record) + "\n")
    assert main(["log", "verify", str(log)]) == 0
    assert "1 records, intact" in capsys.readouterr().out
    log.write_text(json.dumps({**record, "reason": "changed"}) + "\n")
    assert main(["log", "verify", str(log)]) == 1
    assert "edited" in capsys.readouterr().out
    assert main(["log", "verify", str(tmp_path / "absent.jsonl")]) == 2


def test_check_reports_expired_exceptions(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {lists: {allow: [{ecosystem: npm, name: colors, reason: r,"
                      " expires: 2020-01-01}]}}\n")
    config = tmp_path / "stockade.yaml"
    config.write_text(f"storage: {{path: {tmp_path / 'data'}}}\npolicy: {{file: {policy}}}\n")
    assert main(["check", "npm", "colors", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "expired list entry (npm:colors" in err


def test_check_and_audit_date_versions_by_what_the_server_saw(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from stockade.policy.model import Facts
    from stockade.proxy.firstseen import FirstSeen
    from stockade.storage.refs import RefStore

    data = tmp_path / "data"
    now = datetime.now(UTC)
    # The server saw requests with an old 2.31.0, then 2.32.3 appear an hour ago.
    seen = FirstSeen(RefStore(data, "firstseen"), clock=lambda: (now - timedelta(days=400))
                     .timestamp())
    asyncio.run(seen.annotate(Ecosystem.PYPI, "requests",
                              {"2.31.0": Facts(published_at=now - timedelta(days=500))}))
    seen = FirstSeen(RefStore(data, "firstseen"), clock=lambda: (now - timedelta(hours=1))
                     .timestamp())
    asyncio.run(seen.annotate(Ecosystem.PYPI, "requests",
                              {"2.31.0": Facts(), "2.32.3": Facts()}))
    asyncio.run(RefStore(data, "artifacts").put("a", {
        "ecosystem": "pypi", "name": "requests", "version": "2.32.3",
        "filename": "requests-2.32.3-py3-none-any.whl", "upstream": "pypi"}))

    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {cooldown: {min_age: 3d}}\n")
    config = tmp_path / "stockade.yaml"
    config.write_text(f"storage: {{path: {data}}}\npolicy: {{file: {policy}}}\n")

    assert main(["check", "pypi", "requests@2.31.0", "--config", str(config)]) == 0
    assert main(["check", "pypi", "requests@2.32.3", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "requests 2.31.0: allow" in out
    assert "requests 2.32.3: block [cooldown]" in out
    assert "no publish date" not in out

    # Never seen by the server: no date at all, held back (the rule fails closed).
    assert main(["check", "pypi", "requests@9.9.9", "--config", str(config)]) == 1
    assert "no publish date" in capsys.readouterr().out

    assert main(["audit", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "requests 2.32.3" in captured.out
    assert "1 cached artifacts checked" in captured.err
