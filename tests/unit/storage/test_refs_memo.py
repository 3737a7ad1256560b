"""RefStore keeps parsed records with their file's identity: a warm read opens no
file, and a record another process replaced (a new file) is read again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stockade.storage.refs import RefStore


def _counting_reads(store: RefStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = store.read

    def counted(key: str) -> dict[str, Any] | None:
        reads.append(key)
        return read(key)

    monkeypatch.setattr(store, "read", counted)
    return reads


async def test_an_unchanged_record_is_read_from_disk_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RefStore(tmp_path, "artifacts")
    await store.put("pypi|a|demo.whl", {"sha256": "1" * 64})
    reads = _counting_reads(store, monkeypatch)
    for _ in range(3):
        assert (await store.get("pypi|a|demo.whl") or {})["sha256"] == "1" * 64
    assert reads == ["pypi|a|demo.whl"]


async def test_a_record_replaced_by_another_process_is_read_again(tmp_path: Path) -> None:
    mine, other = RefStore(tmp_path, "artifacts"), RefStore(tmp_path, "artifacts")
    await mine.put("k", {"sha256": "1" * 64})
    assert (await mine.get("k") or {})["sha256"] == "1" * 64
    await other.put("k", {"sha256": "2" * 64})
    assert (await mine.get("k") or {})["sha256"] == "2" * 64
    await other.delete("k")
    assert await mine.get("k") is None


async def test_a_caller_changing_its_record_does_not_change_the_next(tmp_path: Path) -> None:
    store = RefStore(tmp_path, "artifacts")
    await store.put("k", {"sha256": "1" * 64})
    first = await store.get("k")
    assert first is not None
    first["sha256"] = "changed"
    assert (await store.get("k") or {})["sha256"] == "1" * 64
