"""Large work gives its memory back: a pool process that parsed a large document,
or a rendering only read to make another, holds nothing of it afterwards."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from stockade.proxy.rendered import LARGE_BYTES, RENDER_NICENESS, RenderedCache
from stockade.proxy.renderslots import RenderSlots

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _parsed_length(body: bytes) -> int:
    """Runs in a pool process: parse ``body`` (and drop what it parsed)."""
    return len(orjson.loads(body))


def _big_document() -> bytes:
    # strings of about a kilobyte: each one a block of the C heap once parsed
    return orjson.dumps([f"{n:08d}" * 125 for n in range(20_000)])


@linux
async def test_a_pool_process_gives_back_what_a_large_parse_used(tmp_path: Path) -> None:
    body = _big_document()
    assert len(body) >= 4 * LARGE_BYTES
    cache = RenderedCache(tmp_path / "r", workers=1, slots=RenderSlots(tmp_path / "l", 1))
    await cache.open()
    try:
        pid = await cache.compute(True, os.getpid)
        assert await cache.compute(True, _parsed_length, b"[]") == 0  # imports this module
        before = _rss(pid)
        assert await asyncio.wait_for(cache.compute(True, _parsed_length, body), 300) == 20_000
        # a second call: the pool process has dropped the first one's arguments by then
        assert await cache.compute(True, os.getpid) == pid
        grown = _rss(pid) - before
        assert grown < len(body) // 4, f"the pool process kept {grown} bytes"
    finally:
        await cache.close()


def _render(size: int) -> bytes:
    return orjson.dumps({"pad": "x" * size})


async def test_a_large_rendering_only_read_again_gets_no_gzip_sibling(tmp_path: Path) -> None:
    cache = RenderedCache(tmp_path / "r", workers=1)
    await cache.open()
    try:
        large = await cache.get("large", _render, 2 * 1024 * 1024, max_age_s=60, heavy=False,
                                compress=False)
        assert large.path.read_bytes() == _render(2 * 1024 * 1024)
        assert not large.path.with_name(large.path.name + ".gz").exists()
        assert large.body is None and large.gzipped is None
        served = await cache.get("served", _render, 2 * 1024 * 1024, max_age_s=60, heavy=False)
        assert served.path.with_name(served.path.name + ".gz").exists()
        # its gzip form, small, is held: answered from memory, the body from its file
        assert served.body is None
        assert served.gzipped == served.path.with_name(served.path.name + ".gz").read_bytes()
        # a small one is answered from memory, in both forms, whatever was asked
        small = await cache.get("small", _render, 100, max_age_s=60, heavy=False,
                                compress=False)
        assert small.body == _render(100) and small.gzipped is not None
    finally:
        await cache.close()


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities")
async def test_pool_processes_yield_the_processor_to_the_serving_process(
        tmp_path: Path) -> None:
    cache = RenderedCache(tmp_path / "r", workers=1)
    await cache.open()
    try:
        # os.nice(0) changes nothing and answers the niceness in force
        assert await cache.compute(True, os.nice, 0) == min(os.nice(0) + RENDER_NICENESS, 19)
        assert await cache.compute(False, os.nice, 0) == os.nice(0)  # threads: as served
    finally:
        await cache.close()
