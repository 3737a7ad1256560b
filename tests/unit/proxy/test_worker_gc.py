"""A worker that serves keeps what it made to get there out of the collector's passes,
and collects its oldest generation less often than the interpreter's default."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stockade.config.load import load_settings
from stockade.proxy import cli
from stockade.proxy.workers import GC_THRESHOLDS, Channel


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was (the test freezes its objects)."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _tracked(obj: object) -> bool:
    """True when a collection pass would scan ``obj`` (frozen objects are not listed)."""
    return any(o is obj for o in gc.get_objects())


def test_ready_freezes_what_the_worker_holds(restored_gc: None) -> None:
    held = {"policy": [object()]}  # made while the worker started
    read_fd, write_fd = os.pipe()
    try:
        assert _tracked(held)
        Channel(write_fd, 0).ready()
        assert os.read(read_fd, 100) == b"ready\n"  # the supervisor is told as before
        assert not _tracked(held)
        made_after = {"index": [object()]}  # what serving makes is collected as usual
        assert _tracked(made_after)
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[2] > 10  # the interpreter's default
    finally:
        os.close(read_fd)
        os.close(write_fd)


async def test_a_single_process_server_settles_too_once_it_listens(
        restored_gc: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``server.workers: 1`` serves in the one process: it settles as a worker does."""
    held = {"policy": [object()]}
    seen: list[bool] = []

    async def serve_until_stopped(*_args: Any, on_listening: Any, **_kw: Any) -> None:
        assert _tracked(held)  # not before it listens
        on_listening(8080)
        seen.append(_tracked(held))

    monkeypatch.setattr(cli, "serve_until_stopped", serve_until_stopped)
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path)}, "server": {"workers": 1}})
    await cli._run(settings)
    assert seen == [False]
    assert gc.get_threshold() == GC_THRESHOLDS
