"""Render slots: a bound on large work shared by every process of a server.

Two ``RenderSlots`` over one folder stand for two worker processes: ``flock`` locks
belong to open file descriptions, so they exclude each other as processes do.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from stockade.proxy.rendered import LARGE_BYTES, RenderedCache
from stockade.proxy.renderslots import RenderSlots


async def _until(condition: object, bound_s: float = 30) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_slot_held_by_one_process_makes_the_other_wait(tmp_path: Path) -> None:
    first, second = RenderSlots(tmp_path, 1), RenderSlots(tmp_path, 1)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold_first() -> None:
        async with first.hold():
            entered.set()
            await release.wait()

    holder = asyncio.create_task(hold_first())
    await entered.wait()
    got: list[str] = []

    async def take_second() -> None:
        async with second.hold():
            got.append("second")

    waiter = asyncio.create_task(take_second())
    for _ in range(20):  # it keeps waiting while the first holds
        await asyncio.sleep(0.01)
        assert got == []
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, waiter), 30)
    assert got == ["second"]


async def test_as_many_holders_as_slots(tmp_path: Path) -> None:
    slots = [RenderSlots(tmp_path, 2) for _ in range(3)]
    inside: list[int] = []
    peak = 0
    release = asyncio.Event()

    async def hold(n: int) -> None:
        nonlocal peak
        async with slots[n].hold():
            inside.append(n)
            peak = max(peak, len(inside))
            await release.wait()
            inside.remove(n)

    tasks = [asyncio.create_task(hold(n)) for n in range(3)]
    await _until(lambda: len(inside) == 2)
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert peak == 2


async def test_a_holder_asking_again_does_not_wait_for_itself(tmp_path: Path) -> None:
    slots = RenderSlots(tmp_path, 1)
    async with slots.hold(), slots.hold():
        done = True
    assert done


def test_no_slots_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        RenderSlots(tmp_path, 0)


def _alone(folder: Path, body: bytes) -> bool:
    """Runs in a pool process: whether no other large computation ran meanwhile
    (``body`` is what makes it large)."""
    marker = folder / "busy"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    try:
        deadline = time.monotonic() + 0.05  # long enough for another one to overlap
        while time.monotonic() < deadline:
            pass
        return True
    finally:
        os.close(fd)
        marker.unlink()


async def test_large_work_of_two_processes_never_overlaps(tmp_path: Path) -> None:
    caches = [RenderedCache(tmp_path / f"r{n}", workers=2,
                            slots=RenderSlots(tmp_path / "locks", 1)) for n in range(2)]
    for cache in caches:
        await cache.open()
    try:
        body = b"x" * LARGE_BYTES
        results = await asyncio.wait_for(asyncio.gather(*(
            caches[n % 2].compute(True, _alone, tmp_path, body) for n in range(8))), 300)
        assert results == [True] * 8
        # small work takes no slot: it runs while another holds the only one
        async with RenderSlots(tmp_path / "locks", 1).hold():
            assert await asyncio.wait_for(
                caches[0].compute(True, _alone, tmp_path, b"small"), 300)
    finally:
        for cache in caches:
            await cache.close()
