"""One decision log written by several processes at once stays one valid chain."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from stockade.policy.model import Decision, Ecosystem, PackageRef, Verdict
from stockade.proxy.checkpoint import read_checkpoint
from stockade.proxy.decisionlog import DecisionLog, verify

BLOCK = Verdict(Decision.BLOCK, "typosquat", '"reqeusts" looks like "requests"', "requests")

_WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from stockade.policy.model import Decision, Ecosystem, PackageRef, Verdict
    from stockade.proxy.decisionlog import DecisionLog

    async def main(path, who, count):
        log = DecisionLog(Path(path), revision=lambda: "rev1")
        await log.open()
        verdict = Verdict(Decision.BLOCK, "typosquat", "looks like", "requests")
        for i in range(count):
            ref = PackageRef(Ecosystem.PYPI, f"{who}-{i}", "1.0")
            await log.record(verdict, ref, client=who, request_id=f"{who}-{i}")
            if i % 7 == 0:
                await asyncio.sleep(0)  # let the writer task run between records
        await log.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


def test_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"w{n}", "200"])  # noqa: S603
             for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    result = verify(path)
    assert result.ok, result.problems
    assert result.records == 600
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(600))
    assert {r["client"] for r in records} == {"w0", "w1", "w2"}
    head = read_checkpoint(path)
    assert head is not None
    assert (head.records, head.hash) == (600, records[-1]["hash"])


async def test_two_logs_on_one_file_interleave_into_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    logs = [DecisionLog(path, revision=lambda: "rev1",
                        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)) for _ in range(2)]
    for log in logs:
        await log.open()  # both see the same (empty) log
    for i in range(6):
        log = logs[i % 2]
        await log.record(BLOCK, PackageRef(Ecosystem.PYPI, f"n{i}", "1.0"),
                         client="10.0.0.1", request_id=f"r{i}")
        await log.close()  # written now; the next record of this log starts its writer again
        await log.open()
    for log in logs:
        await log.close()
    result = verify(path)
    assert result.ok, result.problems
    assert result.records == 6
