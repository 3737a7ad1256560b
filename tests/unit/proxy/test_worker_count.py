"""How many workers ``server.workers: null`` means."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockade.proxy.workers import worker_count

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cpu_max", "expected"), [
    (None, CORES),                          # no cgroup file: the cores we may run on
    ("max 100000", CORES),                  # no limit
    ("100000 100000", 1),                   # one core
    ("150000 100000", min(CORES, 2)),       # 1.5 cores: rounded up
    ("5000 100000", 1),                     # a twentieth: still one worker
    ("6400000 100000", CORES),              # more than the machine: the machine's
    ("garbage", CORES),                     # unreadable: as if none
])
def test_null_is_the_cores_a_container_may_use(tmp_path: Path, cpu_max: str | None,
                                                expected: int) -> None:
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert worker_count(None, cgroup=tmp_path) == expected


def test_a_configured_count_is_kept(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert worker_count(3, cgroup=tmp_path) == 3
