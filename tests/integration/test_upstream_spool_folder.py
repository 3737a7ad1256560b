"""A large upstream document is spooled on the storage's disk (``<storage>/tmp``),
not in the system's temporary folder, which may be a tmpfs holding it in memory;
over read-only storage, in the server's private folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from stockade.proxy import upstream as upstream_module
from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory


async def test_a_large_page_is_spooled_under_the_storage_folder(
        fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pypi.add_wheel("demo", "1.0")
    monkeypatch.setattr(upstream_module, "LARGE_BODY_BYTES", 1)  # every body is large
    where: list[str] = []
    make = tempfile.TemporaryFile

    def temporary_file(**kwargs: Any) -> Any:
        spool = make(**kwargs)
        where.append(os.readlink(f"/proc/self/fd/{spool.fileno()}"))
        return spool

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    client = await make_proxy(upstream=fake_pypi)
    resp = await client.get("/pypi/simple/demo/")
    assert resp.status == 200
    assert b"demo-1.0" in await resp.read()
    assert where and {Path(w).parent for w in where} == {tmp_path / "data" / "tmp"}
