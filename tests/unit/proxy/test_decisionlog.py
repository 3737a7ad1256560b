"""The decision log: chained records, and verification that finds edits and deletions."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockade.policy.model import Decision, Ecosystem, PackageRef, Verdict
from stockade.proxy.decisionlog import DecisionLog, verify

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
    assert len(problems) == 1
    assert "deleted" in problems[0]


async def test_torn_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    await write(path, 2)
    with path.open("a") as fh:
        fh.write('{"seq": 2, "ti')
    problems = verify(path).problems
    assert any("torn" in p for p in problems)
