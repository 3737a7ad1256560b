"""The decision log's checkpoint: cutting records off its end is found."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockade.policy.model import Decision, Ecosystem, PackageRef, Verdict
from stockade.proxy import decisionlog
from stockade.proxy.checkpoint import checkpoint_path, read_checkpoint
from stockade.proxy.cli import main
from stockade.proxy.decisionlog import DecisionLog, verify
from stockade.proxy.metrics import Metrics

BLOCK = Verdict(Decision.BLOCK, "lists", "denied", None)
KEY = b"an operator's secret"


async def write(path: Path, count: int, *, start: int = 0, key: bytes | None = None,
                metrics: Metrics | None = None) -> None:
    log = DecisionLog(path, revision=lambda: "rev1", key=key, metrics=metrics,
                      clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    await log.open()
    for i in range(start, start + count):
        await log.record(BLOCK, PackageRef(Ecosystem.NPM, f"name{i}", "1.0.0"),
                         client="10.0.0.1", request_id=f"req-{i}")
    await log.close()


def cut(path: Path, keep: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:keep]))


async def test_records_cut_off_the_end_are_reported_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 5)
    cut(path, 3)
    result = verify(path)
    assert not result.ok
    (problem,) = result.problems
    assert problem.startswith("truncated")
    assert "3 records" in problem and "says 5" in problem


async def test_every_record_cut_off_or_the_log_removed_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 2)
    cut(path, 0)
    assert verify(path).problems[0].startswith("truncated")
    path.unlink()
    (problem,) = verify(path).problems
    assert "missing" in problem


async def test_a_log_growing_normally_stays_intact(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    metrics = Metrics()
    await write(path, 3, metrics=metrics)
    assert metrics.registry.get_sample_value("stockade_decision_log_records") == 3
    await write(path, 4, start=3, metrics=metrics)
    result = verify(path)
    assert result.ok, result.problems
    assert result.records == 7
    assert result.anchor is not None
    assert result.anchor.records == 7
    assert result.anchor.hash == result.last_hash
    assert metrics.registry.get_sample_value("stockade_decision_log_records") == 7


async def test_a_checkpoint_behind_the_log_is_fine(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing records and moving the checkpoint."""
    path = tmp_path / "decisions.jsonl"
    await write(path, 3)
    before = checkpoint_path(path).read_bytes()

    def crash(*_args: object) -> None:
        raise OSError("the process died here")

    monkeypatch.setattr(decisionlog, "write_checkpoint", crash)
    await write(path, 2, start=3)
    assert checkpoint_path(path).read_bytes() == before
    result = verify(path)
    assert result.ok, result.problems
    assert result.records == 5
    assert result.anchor is not None
    assert result.anchor.records == 3


async def test_a_cut_log_written_again_keeps_its_old_checkpoint(tmp_path: Path) -> None:
    """Cut while the server was down, then continued: the new records must not
    move the anchor over the evidence."""
    path = tmp_path / "decisions.jsonl"
    await write(path, 5)
    cut(path, 3)
    metrics = Metrics()
    await write(path, 2, start=100, metrics=metrics)
    anchor = read_checkpoint(path)
    assert anchor is not None
    assert anchor.records == 5  # not moved
    (problem,) = verify(path).problems
    assert "record 5 does not have the hash" in problem
    await write(path, 3, start=200)
    assert verify(path).problems[0].startswith("truncated or rewritten")


async def test_a_signed_checkpoint_cannot_be_rewritten_without_the_key(
        tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 4, key=KEY)
    assert verify(path, KEY).ok
    assert verify(path).ok  # readable without the key, but then not authenticated
    cut(path, 2)
    lines = path.read_text().splitlines()
    forged = {"records": 2, "hash": json.loads(lines[-1])["hash"], "hmac": "0" * 64}
    checkpoint_path(path).write_text(json.dumps(forged))
    (problem,) = verify(path, KEY).problems
    assert "signature does not match" in problem


async def test_log_verify_command_exits_1_on_truncation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOCKADE_CONFIG", raising=False)
    monkeypatch.setenv("DECISION_KEY", KEY.decode())
    config = tmp_path / "stockade.yaml"
    config.write_text(f"storage: {{path: {tmp_path / 'data'}}}\n"
                      "policy: {decision_log_key_env: DECISION_KEY}\n")
    path = tmp_path / "data" / "decisions.jsonl"
    await write(path, 3, key=KEY)
    assert main(["log", "verify", "--config", str(config)]) == 0
    assert "3 records, intact; checkpoint at 3 records" in capsys.readouterr().out
    cut(path, 2)
    assert main(["log", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "truncated: the log has 2 records, its checkpoint says 3" in out
