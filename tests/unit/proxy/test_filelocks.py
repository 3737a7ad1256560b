"""Single-flight across processes: one lock file per key, waited for, removed by its
holder without letting two holders in."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from stockade.proxy.singleflight import FileLocks, SingleFlight


async def test_a_held_key_waits_and_another_key_does_not(tmp_path: Path) -> None:
    first, second = FileLocks(tmp_path / "locks"), FileLocks(tmp_path / "locks")
    order: list[str] = []
    release, entered = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with first.hold("pypi:demo"):
            order.append("first in")
            entered.set()
            await release.wait()
            order.append("first out")

    async def waiter() -> None:
        async with second.hold("pypi:demo"):
            order.append("second in")

    held = asyncio.create_task(holder())
    await entered.wait()
    waiting = asyncio.create_task(waiter())
    async with second.hold("pypi:other"):  # another key is free meanwhile
        order.append("other")
    await asyncio.sleep(0.05)
    assert "second in" not in order
    release.set()
    await asyncio.gather(held, waiting)
    assert order == ["first in", "other", "first out", "second in"]
    assert list((tmp_path / "locks").iterdir()) == []  # every holder removed its file


def _hold_and_count(folder: str, counter: str, rounds: int) -> None:
    async def run() -> None:
        locks = FileLocks(Path(folder))
        path = Path(counter)
        for _ in range(rounds):
            async with locks.hold("maven:jar"):
                value = int(path.read_text() or "0")
                await asyncio.sleep(0.001)  # a window for a second holder to break in
                path.write_text(str(value + 1))
    asyncio.run(run())


def test_processes_never_hold_one_key_at_once(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_hold_and_count,
                             args=(str(tmp_path / "locks"), str(counter), 50))
             for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.read_text() == "150"  # no increment lost to a second holder


async def test_single_flight_with_locks_runs_the_work_once_per_key(tmp_path: Path) -> None:
    flights = [SingleFlight[str, int](FileLocks(tmp_path / "locks")) for _ in range(2)]
    calls = 0
    stored: dict[str, int] = {}

    async def work() -> int:
        nonlocal calls
        if "k" in stored:  # what a holder before stored
            return stored["k"]
        calls += 1
        await asyncio.sleep(0.05)
        stored["k"] = 42
        return 42

    results = await asyncio.gather(*(f.do("k", work) for f in flights for _ in range(5)))
    assert results == [42] * 10
    assert calls == 1


async def test_an_unusable_folder_runs_the_work_unlocked(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    locks = FileLocks(tmp_path / "file" / "locks")
    async with locks.hold("key"):
        pass  # no error: coordination is lost, the work is not


async def test_a_held_key_is_polled_often_enough_to_follow_a_fill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key's lock is held for one fetch (about 0.1 s for 1 MB): the other process's
    requests wait at most a few milliseconds past its release, not 50."""
    first, second = FileLocks(tmp_path / "locks"), FileLocks(tmp_path / "locks")
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(0)

    async with first.hold("pypi:demo"):
        monkeypatch.setattr(asyncio, "sleep", sleep)
        waiting = asyncio.create_task(_enter(second))
        for _ in range(1000):  # the waiter polls once per turn of the loop here
            if len(waits) >= 12:
                break
            await real_sleep(0)
        assert len(waits) >= 12
    monkeypatch.setattr(asyncio, "sleep", real_sleep)
    await asyncio.wait_for(waiting, 10)
    assert max(waits) <= 0.005


async def _enter(locks: FileLocks) -> None:
    async with locks.hold("pypi:demo"):
        pass
