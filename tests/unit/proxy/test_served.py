"""The served-artifacts record: batched off the request path, read back by time range."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from stockade.policy.model import Ecosystem
from stockade.proxy.affected import served_artifacts
from stockade.proxy.identity import Identity, identity_of, set_identity
from stockade.proxy.metrics import Metrics
from stockade.proxy.served import Served, ServedLog, read_served, recorder
from stockade.storage.protocol import BlobInfo

DAY = 86400.0
T0 = 1_780_000_000.0  # 2026-05-28


def entry(at: float, name: str = "a", who: str | None = "alice") -> Served:
    return Served(at, "npm", name, "1.0.0", f"{name}-1.0.0.tgz", "0" * 64, "10.0.0.1", who,
                  "payments" if who else None)


async def test_entries_are_written_in_batches_and_read_back_by_range(tmp_path: Path) -> None:
    log = ServedLog(tmp_path / "served", Metrics(), flush_s=3600)
    await log.open()
    for at in (T0, T0 + 10, T0 + DAY, T0 + 2 * DAY):
        log.note(entry(at))
    assert read_served(tmp_path / "served", since=0) is not None
    assert list(read_served(tmp_path / "served", since=0)) == []  # nothing written yet
    await log.close()  # flushes
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == [
        "2026-05-28.jsonl", "2026-05-29.jsonl", "2026-05-30.jsonl"]
    got = [e.time for e in read_served(tmp_path / "served", since=T0 + 5, until=T0 + DAY)]
    assert got == [T0 + 10, T0 + DAY]


async def test_a_batch_crossing_days_back_and_forth_keeps_each_days_order(
        tmp_path: Path) -> None:
    """Entries of two days interleaved in one batch (queued fields and ``Served``
    alike) each go to their day's file, in the order they were noted."""
    log = ServedLog(tmp_path / "served", Metrics(), flush_s=3600)
    await log.open()
    noted = [T0, T0 + DAY, T0 + 1, T0 + DAY + 1, T0 + 2]
    for i, at in enumerate(noted):
        served = entry(at, name=f"p{i}")
        log.note(dataclasses.astuple(served) if i % 2 else served)
    await log.close()
    for day, times in (("2026-05-28", [T0, T0 + 1, T0 + 2]),
                       ("2026-05-29", [T0 + DAY, T0 + DAY + 1])):
        lines = (tmp_path / "served" / f"{day}.jsonl").read_bytes().splitlines()
        assert [orjson.loads(line)["time"] for line in lines] == times
    assert [e.name for e in read_served(tmp_path / "served", since=0)] == [
        "p0", "p2", "p4", "p1", "p3"]


async def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    log = ServedLog(tmp_path / "served", Metrics())
    await log.open()
    log.note(entry(T0))
    await log.flush()
    with (tmp_path / "served" / "2026-05-28.jsonl").open("ab") as handle:
        handle.write(b'{"time": 1780000001, "ecos')
    log.note(entry(T0 + 2))
    await log.close()
    # the next batch starts on a line of its own: only the torn fragment is lost
    assert [e.time for e in read_served(tmp_path / "served", since=0)] == [T0, T0 + 2]


async def test_a_full_batch_drops_and_counts(tmp_path: Path) -> None:
    metrics = Metrics()
    log = ServedLog(tmp_path / "served", metrics, flush_s=3600, max_pending=2)
    for i in range(5):
        log.note(entry(T0 + i))
    assert metrics.registry.get_sample_value("stockade_served_records_dropped_total") == 3


def test_served_artifacts_groups_callers_and_keeps_the_most_recent(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    lines = [entry(T0, "a"), entry(T0 + 1, "a"), entry(T0 + 2, "a", None), entry(T0 + 3, "b"),
             entry(T0 + 4, "c")]
    (folder / "2026-05-28.jsonl").write_bytes(b"".join(orjson.dumps(asdict(e)) + b"\n"
                                                       for e in lines))
    found = served_artifacts(folder, since=0, most=2)
    assert [a.name for a in found] == ["c", "b"]  # bounded: the most recently served
    (a,) = [x for x in served_artifacts(folder, since=0, most=10) if x.name == "a"]
    assert {(f.identity, f.count) for f in a.fetchers.values()} == {("alice", 2), (None, 1)}


async def test_day_files_past_the_retention_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    for day in ("2020-01-01", "2020-01-02"):
        (folder / f"{day}.jsonl").write_bytes(b"")
    log = ServedLog(folder, Metrics(), retention_days=30)
    await log.open()
    log.note(entry(time.time()))
    await log.close()
    assert [p.name for p in folder.iterdir()] == [
        datetime.now(UTC).strftime("%Y-%m-%d") + ".jsonl"]


async def test_without_a_folder_each_record_is_one_logged_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Storage served read-only: nothing is written, each record is logged whole."""
    log = ServedLog(None, Metrics(), flush_s=3600, retention_days=1)
    await log.open()
    log.note(entry(T0, "left-pad"))
    log.note(entry(T0 + 1, "right-pad", who=None))
    with caplog.at_level(logging.INFO, logger="stockade.served"):
        await log.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "stockade.served"]
    assert [Served(**orjson.loads(line)) for line in lines] == [
        entry(T0, "left-pad"), entry(T0 + 1, "right-pad", who=None)]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("who", [None, Identity("ci-bot", "payments")])
async def test_the_recorder_writes_what_served_of_makes(
        tmp_path: Path, who: Identity | None) -> None:
    """The pipeline's hook queues the fields alone (the client's address and identity
    as the pipeline reads them from the request); the record written is the one
    ``Served.of`` makes of the request."""
    log = ServedLog(tmp_path / "served", Metrics(), flush_s=3600)
    await log.open()
    request = make_mocked_request("GET", "/npm/left-pad/-/left-pad-1.3.0.tgz")
    if who is not None:
        set_identity(request, who)
    # what the hook reads of an ArtifactSource
    source = SimpleNamespace(ecosystem=Ecosystem.NPM, name="left-pad", version="1.3.0",
                             filename="left-pad-1.3.0.tgz")
    before = time.time()
    recorder(log)(request.remote or "", identity_of(request), source,  # type: ignore[arg-type]
                  BlobInfo("0" * 64, 3))
    await log.close()
    (written,) = read_served(tmp_path / "served", since=0)
    made = Served.of(request, ecosystem="npm", name="left-pad", version="1.3.0",
                     filename="left-pad-1.3.0.tgz", sha256="0" * 64)
    assert before <= written.time <= made.time
    assert dataclasses.replace(written, time=made.time) == made
