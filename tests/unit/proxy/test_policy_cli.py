"""``stockade check`` and ``stockade log verify`` as a user runs them."""

from __future__ import annotations

import io
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


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with a storage path and nothing else (no STOCKADE_CONFIG from outside)."""
    monkeypatch.delenv("STOCKADE_CONFIG", raising=False)
    path = tmp_path / "stockade.yaml"
    path.write_text(f"storage: {{path: {tmp_path / 'data'}}}\n")
    return path


def test_check_json_contract(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code = main(["check", "pypi", "requests@2.32.3", "--config", str(config), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ecosystem", "name", "version", "decision", "rule", "reason", "target"}
    assert out["name"] == "requests"
    assert out["version"] == "2.32.3"
    assert out["decision"] in ("allow", "warn", "block")
    assert code == (1 if out["decision"] == "block" else 0)


def test_check_takes_several_names_and_standard_input(
        capsys: pytest.CaptureFixture[str], config: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("# from a lockfile\nlodash\n\nloadsh\n"))
    code = main(["check", "npm", "pupeter", "-", "react", "--config", str(config), "--json"])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["name"], o["decision"]) for o in out] == [
        ("pupeter", "block"), ("lodash", "allow"), ("loadsh", "block"), ("react", "allow")]
    assert out[0]["target"] == "puppeteer"
    assert code == 1  # any refusal


def test_check_names_a_malformed_name_and_decides_the_rest(
        capsys: pytest.CaptureFixture[str], config: Path) -> None:
    long_name = "a" * 300
    code = main(["check", "pypi", "req uests", "reqeusts", long_name, "requests@2.32.3",
                 "--config", str(config), "--json"])
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    # every name gets its line, in order: an undecidable one an error, not a decision
    assert [(o["name"], o.get("decision"), o.get("error")) for o in out] == [
        ("req uests", None, "not a valid Python project name"),
        ("reqeusts", "block", None),
        (long_name, None, "not a valid Python project name"),
        ("requests", "allow", None)]
    assert set(out[0]) == {"ecosystem", "name", "version", "error"}
    assert out[0]["ecosystem"] == "pypi"
    assert out[0]["version"] is None
    assert "req uests: not a valid Python project name" in captured.err
    assert f"{long_name}: not a valid Python project name" in captured.err
    assert code == 2  # a name could not be decided: more than a refusal


def test_check_json_gives_an_invalid_name_its_error_line(
        capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code = main(["check", "npm", "Bad Name@1.0.0", "--config", str(config), "--json"])
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ecosystem": "npm", "name": "Bad Name",
                                        "version": "1.0.0",
                                        "error": "not a valid npm package name"}
    assert "Bad Name@1.0.0: not a valid npm package name" in captured.err
    assert code == 2


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


def test_check_and_audit_decide_on_the_metadata_the_server_cached(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Install scripts, licences and upload times come from the packument and project
    page the server last cached, read without the network."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from stockade.config.load import load_settings
    from stockade.proxy.ecosystems import npm, pypi
    from stockade.proxy.ecosystems.npm_documents import FULL
    from stockade.proxy.ecosystems.pypi_pages import JSON_V1, UPSTREAM_ACCEPT
    from stockade.proxy.metadocs import doc_key
    from stockade.storage.refs import RefStore

    data = tmp_path / "data"
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n"
                      "  install_scripts: {npm: block}\n"
                      "  licenses: {deny: [AGPL-3.0-only], unknown: allow}\n"
                      "  cooldown: {min_age: 3d}\n")
    config = tmp_path / "stockade.yaml"
    config.write_text(f"storage: {{path: {data}}}\npolicy: {{file: {policy}}}\n")
    settings = load_settings(config, environ={})
    metadata = RefStore(data, "metadata")
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    new = (datetime.now(UTC) - timedelta(hours=2)).isoformat()

    npm_up = settings.npm.upstreams[0]
    packument = {"name": "left-pad", "versions": {
        "1.0.0": {"name": "left-pad", "version": "1.0.0", "license": "MIT"},
        "1.1.0": {"name": "left-pad", "version": "1.1.0", "license": "MIT",
                  "scripts": {"postinstall": "node evil.js"}},
        "1.2.0": {"name": "left-pad", "version": "1.2.0", "license": "AGPL-3.0-only"},
    }, "time": {"1.0.0": old, "1.1.0": old, "1.2.0": old}}
    url = npm.document_url(npm_up.url, "left-pad")
    asyncio.run(metadata.put(doc_key("npm", npm_up.name, url, FULL), {
        "url": url, "content_type": "application/json", "fetched_at": 0.0,
        "etag": None, "last_modified": None}, json.dumps(packument).encode()))

    pypi_up = settings.pypi.upstreams[0]
    page = {"meta": {"api-version": "1.1"}, "name": "tiny", "files": [
        {"filename": "tiny-1.0-py3-none-any.whl", "url": "tiny-1.0-py3-none-any.whl",
         "hashes": {"sha256": "00" * 32}, "upload-time": old},
        {"filename": "tiny-2.0-py3-none-any.whl", "url": "tiny-2.0-py3-none-any.whl",
         "hashes": {"sha256": "11" * 32}, "upload-time": new}]}
    url = pypi.page_url(pypi_up.url, "tiny")
    asyncio.run(metadata.put(doc_key("pypi", pypi_up.name, url, UPSTREAM_ACCEPT), {
        "url": url, "content_type": JSON_V1, "fetched_at": 0.0,
        "etag": None, "last_modified": None}, json.dumps(page).encode()))

    assert main(["check", "npm", "left-pad@1.0.0", "--config", str(config)]) == 0
    assert main(["check", "npm", "left-pad@1.1.0", "--config", str(config)]) == 1
    assert main(["check", "npm", "left-pad@1.2.0", "--config", str(config)]) == 1
    assert main(["check", "pypi", "tiny@1.0", "--config", str(config)]) == 0
    assert main(["check", "pypi", "tiny@2.0", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "left-pad@1.1.0: block [install-scripts]" in out
    assert "left-pad@1.2.0: block [licenses]" in out
    assert "tiny 2.0: block [cooldown]" in out
    assert "no publish date" not in out

    # audit: the cached tarball with an install script is reported, the clean one not
    for version in ("1.0.0", "1.1.0"):
        asyncio.run(RefStore(data, "artifacts").put(f"npm-{version}", {
            "ecosystem": "npm", "name": "left-pad", "version": version,
            "filename": f"left-pad-{version}.tgz", "upstream": npm_up.name}))
    assert main(["audit", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "left-pad@1.1.0 (left-pad-1.1.0.tgz): block [install-scripts]" in captured.out
    assert "left-pad@1.0.0" not in captured.out
    assert "2 cached artifacts checked" in captured.err
