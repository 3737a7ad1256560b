"""Reading the decision log backwards, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from stockade.proxy.ui import logtail
from stockade.proxy.ui.logtail import Filter, read_page

START = datetime(2026, 1, 1, tzinfo=UTC)


def write_log(path: Path, count: int, *, every: int = 1) -> None:
    lines = []
    for i in range(count):
        lines.append(orjson.dumps({
            "seq": i, "time": (START + timedelta(minutes=i)).isoformat(),
            "ecosystem": "npm" if i % 2 else "pypi", "name": f"pkg-{i}",
            "decision": "block", "rule": "age" if i % 3 == 0 else "deny-list",
        }))
    path.write_bytes(b"\n".join(lines) + b"\n")


def names(page: logtail.Page) -> list[str]:
    return [r["name"] for r in page.records]


def test_pages_walk_the_whole_log_newest_first(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtail, "BLOCK", 97)  # records straddle block boundaries
    log = tmp_path / "decisions.jsonl"
    write_log(log, 50)
    seen: list[str] = []
    before = None
    while True:
        page = read_page(log, Filter(), limit=7, before=before)
        seen += names(page)
        if page.older is None:
            break
        before = page.older
    assert seen == [f"pkg-{i}" for i in reversed(range(50))]


def test_filters_and_time_bounds(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    write_log(log, 30)
    npm_age = read_page(log, Filter(ecosystem="npm", rule="age"), limit=100)
    assert names(npm_age) == [f"pkg-{i}" for i in (27, 21, 15, 9, 3)]
    since = read_page(log, Filter(since=START + timedelta(minutes=25)), limit=100)
    assert names(since) == [f"pkg-{i}" for i in (29, 28, 27, 26, 25)]
    assert since.older is None  # the scan stopped at the first older record
    until = read_page(log, Filter(until=START + timedelta(minutes=2)), limit=100)
    assert names(until) == ["pkg-1", "pkg-0"]
    assert names(read_page(log, Filter(name="PKG-1"), limit=3)) == ["pkg-19", "pkg-18",
                                                                    "pkg-17"]
    assert read_page(log, Filter(team="payments"), limit=5).records == ()


def test_scan_is_bounded_and_resumable(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    write_log(log, 200)
    page = read_page(log, Filter(name="pkg-0"), limit=5, max_scan_bytes=2000)
    assert page.cut_short and page.older is not None and page.records == ()
    rest = read_page(log, Filter(name="pkg-0"), limit=5, before=page.older)
    assert names(rest) == ["pkg-0"]


def test_torn_overlong_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtail, "MAX_LINE", 300)
    monkeypatch.setattr(logtail, "BLOCK", 64)
    log = tmp_path / "decisions.jsonl"
    good = orjson.dumps({"name": "kept", "time": START.isoformat()})
    huge = orjson.dumps({"name": "huge", "pad": "x" * 2000})
    log.write_bytes(good + b"\n" + huge + b"\n" + b'{"name": "torn"' + b"\n[1,2]\n")
    assert names(read_page(log, Filter(), limit=10)) == ["kept"]
    assert read_page(tmp_path / "absent.jsonl", Filter(), limit=10).records == ()
