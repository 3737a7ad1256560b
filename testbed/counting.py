"""Counting calls, for tests that assert a warm path reads, parses or renders nothing
again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """One entry per call of ``module.name`` from now on (a parser or renderer), which
    is still called."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls
