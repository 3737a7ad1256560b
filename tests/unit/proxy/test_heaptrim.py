"""The heap given back once the caches of a memory budget dropped a quarter of it:
in a thread, at most once per interval, and nothing for a few small drops."""

from __future__ import annotations

import asyncio
import mmap
import threading
import time
from collections.abc import Callable

import pytest

from stockade.proxy import heaptrim
from stockade.proxy.budget import BudgetedLRU, MemoryBudget
from stockade.proxy.heaptrim import HeapTrim

MIB = 1024 * 1024


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads each trim ran in."""
    ran: list[str] = []
    monkeypatch.setattr(heaptrim, "release_memory",
                        lambda: ran.append(threading.current_thread().name))
    return ran


async def test_the_heap_is_trimmed_off_the_loop_once_a_quarter_was_dropped(
        trims: list[str]) -> None:
    budget = MemoryBudget(4 * MIB)  # a trim after 1 MiB dropped
    trim = HeapTrim(budget, min_interval_s=0.0)
    cache: BudgetedLRU[int, bytes] = BudgetedLRU(4 * MIB, len, budget, "blobs")
    for n in range(3):
        cache[n] = bytes(300 * 1024)
    del cache[0], cache[1]  # 600 KiB dropped: not yet
    await asyncio.sleep(0.05)
    assert trims == [] and trim.trims == 0
    for n in range(3, 20):  # past the budget: the oldest are shed
        cache[n] = bytes(300 * 1024)
    await _until(lambda: trim.trims == 1)
    assert "MainThread" not in trims
    await trim.close()


async def test_trims_are_at_most_one_per_interval(trims: list[str]) -> None:
    now = [100.0]
    budget = MemoryBudget(4 * MIB)
    trim = HeapTrim(budget, min_interval_s=60.0, clock=lambda: now[0])
    account = budget.account("blobs", 4 * MIB, lambda: False)
    account.charge(3 * MIB)
    account.release(2 * MIB)
    await _until(lambda: trim.trims == 1)
    account.charge(3 * MIB)
    account.release(3 * MIB)  # within the interval: planned for its end, not run now
    await asyncio.sleep(0.05)
    assert trim.trims == 1
    await trim.close()  # the planned trim is cancelled
    assert len(trims) == 1


async def test_a_process_grown_by_a_quarter_of_the_budget_is_trimmed_once(
        trims: list[str]) -> None:
    """Memory freed with nothing shed (a blob read for one answer, a send buffer):
    the resident level's growth since the last trim starts one, off the loop."""
    level = [50 * MIB]
    budget = MemoryBudget(8 * MIB)  # the mark: 2 MiB
    trim = HeapTrim(budget, min_interval_s=0.01, resident=lambda: level[0])
    trim.watch()
    level[0] += MIB  # under the mark: looked at, not trimmed
    await asyncio.sleep(0.1)
    assert trim.trims == 0
    level[0] += 2 * MIB
    await _until(lambda: trim.trims == 1)
    assert "MainThread" not in trims
    await asyncio.sleep(0.1)  # the level after the trim is the new floor: no second
    assert trim.trims == 1
    level[0] -= 4 * MIB  # shrank: growth counts from the lowest level seen
    await asyncio.sleep(0.1)
    level[0] += 2 * MIB
    await _until(lambda: trim.trims == 2)
    await trim.close()
    level[0] += 8 * MIB  # no longer watched
    await asyncio.sleep(0.1)
    assert trim.trims == 2 and len(trims) == 2


async def test_a_heap_that_grows_back_after_each_trim_is_trimmed_ever_less_often(
        trims: list[str]) -> None:
    """A steady load's working set grows back after every trim: each growth trim
    doubles the wait before the next; a quiet look after that wait sets it back."""
    now, level = [0.0], [50 * MIB]
    budget = MemoryBudget(8 * MIB)  # the mark: 2 MiB
    trim = HeapTrim(budget, min_interval_s=1.0, clock=lambda: now[0],
                    resident=lambda: level[0])  # (a trim gives nothing back here)
    trim.watch()
    at: list[float] = []

    async def look(grow: int) -> None:
        now[0] += 1.0
        level[0] += grow
        before = trim.trims
        trim._look()  # (the loop's own look is an interval of real time away)
        await _until(lambda: trim._task is None)
        if trim.trims != before:
            at.append(now[0])

    for _ in range(15):
        await look(3 * MIB)
    assert at == [1.0, 3.0, 7.0, 15.0]
    for _ in range(16):
        await look(0)  # the load ended: quiet for the whole wait
    await look(3 * MIB)
    assert at == [1.0, 3.0, 7.0, 15.0, 32.0]  # the wait is one interval again
    await trim.close()
    assert len(trims) == 5


async def test_nothing_is_watched_where_the_level_cannot_be_read(
        trims: list[str]) -> None:
    trim = HeapTrim(MemoryBudget(4 * MIB), min_interval_s=0.01, resident=lambda: None)
    trim.watch()
    await asyncio.sleep(0.1)
    assert trims == [] and trim._watching is None
    await trim.close()


def test_the_resident_level_is_read_from_the_process() -> None:
    level = heaptrim.resident_anonymous()
    assert level is not None and level > 0
    # fresh private anonymous pages, touched: resident (a bytearray could be carved
    # from heap the process freed earlier and still holds, resident already)
    held = mmap.mmap(-1, 32 * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        for at in range(0, len(held), 4096):
            held[at] = 1
        grown = heaptrim.resident_anonymous()
        assert grown is not None and grown - level >= 16 * MIB
    finally:
        held.close()
