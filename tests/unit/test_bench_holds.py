"""bench.cold_packuments --holds: a loop callback that held the loop is listed with the
CPU time it used, so one that computed is told from one that waited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.cold_packuments import _HOLDS_SITE, holds_summary

# Under the site module: one callback computes for 60 ms of CPU, one sleeps 60 ms.
_PROGRAM = """
import asyncio, time
def compute():
    end = time.thread_time() + 0.06
    while time.thread_time() < end:
        pass
async def main():
    loop = asyncio.get_running_loop()
    loop.call_soon(compute)
    loop.call_soon(time.sleep, 0.06)
    await asyncio.sleep(0.2)
asyncio.run(main())
"""


def test_holds_are_listed_with_the_cpu_they_used(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_HOLDS_SITE)
    env = {**os.environ, "PYTHONPATH": str(site),
           "STOCKADE_BENCH_HOLDS": str(tmp_path / "holds")}
    subprocess.run([sys.executable, "-c", _PROGRAM], env=env, check=True,  # noqa: S603
                   timeout=60)
    lines = [line.split(" ", 3) for path in tmp_path.glob("holds.*")
             for line in path.read_text().splitlines()]
    # (on a busy machine other callbacks may wait for a core over 20 ms too)
    held = [(int(ms), int(cpu)) for _, ms, cpu, where in lines if not where.startswith("gc-")]
    assert any(ms >= 60 and cpu >= 60 for ms, cpu in held)  # the one that computed
    assert any(ms >= 60 and cpu < 20 for ms, cpu in held)  # the one that slept


def test_the_summary_ranks_by_time_held_and_counts_those_that_computed(
        tmp_path: Path) -> None:
    (tmp_path / "holds.1").write_text(
        "hold 300 5 cli.py:work\nhold 40 35 upstream.py:read\n")
    (tmp_path / "holds.2").write_text(
        "hold 50 45 upstream.py:read\nhold 120 110 gc-generation-2\n")
    assert holds_summary(tmp_path) == (
        "cli.py:work 1x max 300 ms (CPU max 5 ms, 0x over 20); "
        "gc-generation-2 1x max 120 ms (CPU max 110 ms, 1x over 20); "
        "upstream.py:read 2x max 50 ms (CPU max 45 ms, 2x over 20)")
