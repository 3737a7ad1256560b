"""Who builds a first start's index files: the lock between starts, a failed child."""

from __future__ import annotations

import fcntl
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat import store
from stockade.proxy import indexes


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path / "index"))
    monkeypatch.delenv("STOCKADE_INDEX_PREBUILT", raising=False)
    return tmp_path / "index"


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[list[indexes.Job]]:
    """The builds asked of children (none started)."""
    asked: list[list[indexes.Job]] = []
    monkeypatch.setattr(indexes, "_build_in_children",
                        lambda _where, wanted, _deadline: asked.append(wanted))
    return asked


def _poll(condition: Any, bound_s: float = 30) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_second_start_waits_for_the_first_and_builds_nothing(
        cache: Path, children: list[list[indexes.Job]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache.mkdir()
    wanted = indexes.missing()
    assert len(wanted) == len(Ecosystem) * len(indexes.KINDS)
    left = list(wanted)
    monkeypatch.setattr(indexes, "missing", lambda: list(left))
    tried: list[bool] = []
    locked = indexes._locked

    def trying(lock: Any, deadline: float) -> bool:
        tried.append(True)
        return locked(lock, deadline)

    monkeypatch.setattr(indexes, "_locked", trying)
    with (cache / ".build.lock").open("ab") as held:  # the first start, building
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        second = threading.Thread(target=indexes.build_outside)
        second.start()
        _poll(lambda: tried)  # at the lock, which it cannot have while it is held
        assert second.is_alive()
        left.clear()  # the first start's files are written
    second.join(timeout=30)
    assert not second.is_alive()
    assert not children


def test_past_the_deadline_a_start_builds_as_well(
        cache: Path, children: list[list[indexes.Job]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cache.mkdir()
    monkeypatch.setattr(indexes, "_WAIT_S", 0.2)
    with (cache / ".build.lock").open("ab") as held:  # a start that never finishes
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with caplog.at_level(logging.WARNING, logger="stockade.proxy.indexes"):
            indexes.build_outside()
    assert len(children) == 1
    assert "building them here too" in caplog.text


def test_a_folder_that_cannot_be_written_is_left_to_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        children: list[list[indexes.Job]]) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path / "a-file" / "index"))
    indexes.build_outside()
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", "")
    indexes.build_outside()
    assert not children


def test_a_failed_child_leaves_the_build_to_the_server(
        cache: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # every child fails
    names = ("requests", "numpy", "pandas")
    indexes.build_when_missing()
    with caplog.at_level(logging.WARNING, logger="stockade.proxy.indexes"):
        index = store.load_or_build(Ecosystem.PYPI, names)  # built here instead
    assert "were not all built" in caplog.text
    assert index.lookalike("reqeusts") is not None
    assert store.found(store.names_file(Ecosystem.PYPI, names)) is not None  # kept
    assert not store._elsewhere  # asked once
