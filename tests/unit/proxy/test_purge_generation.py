"""The purge generation: a purge by one process is seen by every other at its next
check, read from a shared mapping of the generation file, without a ``stat`` per
check; a file replaced rather than written is still seen."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from stockade.proxy.purge import GENERATION_FILE, Generation, bump_generation


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _counting_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = os.stat

    def stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        seen.append(str(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat)
    return seen


def _bump_elsewhere(root: Path) -> None:
    """A purge in another process (a worker of the same server)."""
    process = multiprocessing.get_context("fork").Process(
        target=bump_generation, args=(root / GENERATION_FILE,))
    process.start()
    process.join(timeout=30)
    assert process.exitcode == 0


def test_another_process_purge_is_seen_at_the_next_check_without_a_stat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    generation = Generation(tmp_path, clock=clock)
    stats = _counting_stats(monkeypatch)
    assert not generation.changed()
    _bump_elsewhere(tmp_path)
    assert generation.changed()  # the very next check
    assert not generation.changed()  # once
    for _ in range(3):
        _bump_elsewhere(tmp_path)
        assert generation.changed()
        assert not generation.changed()
    assert [s for s in stats if s.endswith(GENERATION_FILE)] == [
        str(tmp_path / GENERATION_FILE)] * 4  # one per purge seen, none per check


def test_a_replaced_file_is_seen_within_the_stat_interval(tmp_path: Path) -> None:
    clock = _Clock()
    generation = Generation(tmp_path, clock=clock, stat_every_s=1.0)
    replacement = tmp_path / "elsewhere"
    replacement.write_bytes(b"0123456789abcdef")
    os.replace(replacement, tmp_path / GENERATION_FILE)  # as an older release purged
    assert not generation.changed()  # the mapping still shows the old file
    clock.now += 1.5
    assert generation.changed()
    assert not generation.changed()
    bump_generation(tmp_path / GENERATION_FILE)  # and the new file is the one mapped
    assert generation.changed()


def test_without_the_file_each_check_looks_for_it(tmp_path: Path) -> None:
    storage = tmp_path / "not-yet"
    generation = Generation(storage)  # its folder is not there: nothing mapped
    assert not generation.changed()
    bump_generation(storage / GENERATION_FILE)
    assert generation.changed()
    bump_generation(storage / GENERATION_FILE)
    assert generation.changed()  # mapped now
    assert not generation.changed()
