"""Counting what a cache reads from its stored records, for tests that assert a warm
path reads nothing again."""

from __future__ import annotations

import pytest

from stockade.storage.refs import RefStore


def count_body_reads(refs: RefStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the bodies read through ``refs`` from now on, one entry a read."""
    reads: list[str] = []
    get_body = refs.get_body

    async def counted(key: str) -> bytes | None:
        reads.append(key)
        return await get_body(key)

    monkeypatch.setattr(refs, "get_body", counted)
    return reads
