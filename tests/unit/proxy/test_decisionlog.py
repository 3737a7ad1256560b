"""The decision log: chained records, and verification that finds edits and deletions."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockade.policy.model import Decision, Ecosystem, PackageRef, Verdict
from stockade.proxy import decisionlog
from stockade.proxy.decisionlog import DecisionLog, verify
from stockade.proxy.metrics import Metrics

BLOCK = Verdict(Decision.BLOCK, "typosquat", '"reqeusts" looks like "requests"', "requests")


async def write(path: Path, count: int, *, start: int = 0) -> None:
    log = DecisionLog(path, revision=lambda: "rev1",
                      clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    await log.open()
    for i in range(start, start + count):
        ref = PackageRef(Ecosystem.PYPI, f"name{i}", "1.0")
        await log.record(BLOCK, ref, client="10.0.0.1", request_id=f"req-{i}")
    await log.close()


async def test_records_chain_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 5)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [0, 1, 2, 3, 4]
    assert lines[0]["request_id"] == "req-0"
    assert lines[0]["policy_revision"] == "rev1"
    assert lines[0]["target"] == "requests"
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(lines))
    result = verify(path)
    assert result.ok
    assert result.records == 5
    assert result.last_hash == lines[-1]["hash"]


async def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 2)
    await write(path, 2, start=2)
    result = verify(path)
    assert result.ok, result.problems
    assert result.records == 4


async def test_edited_record_is_found(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 3)
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["reason"] = "nothing to see"
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    (problem,) = verify(path).problems
    assert "line 2" in problem
    assert "edited" in problem


@pytest.mark.parametrize("deleted", [0, 1])
async def test_deleted_record_is_found(tmp_path: Path, deleted: int) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 3)
    lines = path.read_text().splitlines()
    del lines[deleted]
    path.write_text("\n".join(lines) + "\n")
    problems = verify(path).problems
    (chain,) = [p for p in problems if p.startswith("line ")]
    assert "deleted" in chain
    # one record fewer than the checkpoint anchors, too
    assert [p for p in problems if p.startswith("truncated")]


async def test_torn_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 2)
    with path.open("a") as fh:
        fh.write('{"seq": 2, "ti')
    problems = verify(path).problems
    assert any("torn" in p for p in problems)


async def test_a_torn_last_line_is_continued_on_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 2)
    with path.open("a") as fh:
        fh.write('{"seq": 2, "ti')  # a crash in mid-write
    await write(path, 2, start=2)
    lines = path.read_text().splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for i, line in enumerate(lines) if i != 2]
    assert [r["name"] for r in records] == ["name0", "name1", "name2", "name3"]
    assert records[2]["prev"] == records[1]["hash"]  # chained past the torn line
    result = verify(path)
    assert result.records == 4
    (problem,) = result.problems
    assert "line 3" in problem and "torn" in problem


def _sample(metrics: Metrics, name: str) -> float | None:
    """A decision-log metric's value, as /metrics shows it."""
    return metrics.registry.get_sample_value(f"stockade_decision_log_{name}")


class _FailingDisk:
    """``os.write`` that fails (full disk) ``failures`` times, each after writing part
    of what it was given, then writes as usual."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, fd: int, data: bytes) -> int:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)


async def test_records_survive_a_full_disk_and_are_written_when_it_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 2)
    disk = _FailingDisk(failures=3)
    monkeypatch.setattr(decisionlog, "_write", disk)
    metrics = Metrics()
    log = DecisionLog(path, revision=lambda: "rev1", metrics=metrics, retry_seconds=0.01)
    await log.open()
    for i in range(2, 7):
        await log.record(BLOCK, PackageRef(Ecosystem.PYPI, f"name{i}", "1.0"),
                         client="10.0.0.1", request_id=f"req-{i}")
        await asyncio.sleep(0)
    deadline = asyncio.get_running_loop().time() + 30
    while not (disk.failures == 0 and _sample(metrics, "pending_records") == 0):
        # retried every 10 ms until the disk takes them
        assert asyncio.get_running_loop().time() < deadline, "held records never written"
        await asyncio.sleep(0.01)
    await log.close()
    assert disk.calls > 3
    lines = path.read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == [f"name{i}" for i in range(7)]
    result = verify(path)
    assert result.ok, result.problems
    assert log.lost == 0
    assert _sample(metrics, "pending_records") == 0
    assert _sample(metrics, "lost_records_total") == 0


async def test_records_past_the_bound_are_dropped_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "decisions.jsonl"
    monkeypatch.setattr(decisionlog, "_write", _FailingDisk(failures=10**6))
    monkeypatch.setattr(decisionlog, "_QUEUE_MAX", 3)
    metrics = Metrics()
    log = DecisionLog(path, revision=lambda: "rev1", metrics=metrics, retry_seconds=0.01)
    await log.open()
    for i in range(5):
        await log.record(BLOCK, PackageRef(Ecosystem.PYPI, f"name{i}", "1.0"),
                         client="10.0.0.1", request_id=f"req-{i}")
    assert log.lost == 2  # the fourth and fifth: three already waited
    await log.close()  # the disk never recovered: the three held are lost too
    assert log.lost == 5
    assert _sample(metrics, "lost_records_total") == 5
    assert path.read_bytes() == b""  # every failed write was cut back: nothing torn
