"""A package of thousands of versions gets first-seen times and decisions a part at a
time, the event loop running between parts, and the same answer as all at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stockade.policy.engine import build_engine
from stockade.policy.file import parse_policy
from stockade.policy.model import ALLOWED, Decision, Ecosystem, Facts, PackageRef, Verdict
from stockade.proxy import firstseen
from stockade.proxy.firstseen import PART, FirstSeen
from stockade.proxy.gate import Gate
from stockade.proxy.metrics import Metrics

OLD = datetime(2020, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


class Records:
    """Records in memory, answered without ever giving the loop a turn."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    async def update(self, key: str, merge: Any) -> dict[str, Any]:
        self.records[key] = merge(self.records.get(key))
        return self.records[key]


def _facts(n: int, start: int = 0) -> dict[str, Facts]:
    """``n`` versions, every third undated, every fifth already carrying a time."""
    return {
        f"1.0.{i}": Facts(
            upstream="up", license="MIT", digests={"sha512": f"{i:x}"},
            published_at=None if i % 3 == 0 else OLD + timedelta(hours=i),
            first_seen_at=OLD if i % 5 == 0 else None,
        ) for i in range(start, start + n)
    }


async def _ticking(work: Any) -> tuple[Any, int]:
    """``work`` awaited while another task counts the event loop's turns."""
    turns = 0
    done = False

    async def tick() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    started = turns
    result = await work
    done = True
    await ticker
    return result, turns - started


async def test_annotate_of_many_versions_is_what_replacing_each_gave() -> None:
    seen = FirstSeen(Records(), clock=NOW.timestamp)  # type: ignore[arg-type]
    listing = _facts(1000)
    first = await seen.annotate(Ecosystem.NPM, "big", listing)
    # first sight of the listing: the upstream's date, or long ago where none
    assert first == {v: dataclasses.replace(f, first_seen_at=f.published_at or LONG_AGO)
                     for v, f in listing.items()}
    assert list(first) == list(listing)
    later = {**listing, **_facts(600, start=1000)}
    again = await seen.annotate(Ecosystem.NPM, "big", later)
    # versions that appear later are first seen now, whatever they claim
    assert again == {v: dataclasses.replace(
        f, first_seen_at=NOW if v not in listing else f.published_at or LONG_AGO)
        for v, f in later.items()}
    one = await seen.annotate(Ecosystem.NPM, "big", later, only="1.0.1200")
    assert one == {"1.0.1200": dataclasses.replace(later["1.0.1200"], first_seen_at=NOW)}


async def test_a_single_file_of_many_versions_keeps_undated_ones_unknown() -> None:
    seen = FirstSeen(Records(), clock=NOW.timestamp)  # type: ignore[arg-type]
    files = _facts(700)
    got = await seen.annotate(Ecosystem.MAVEN, "g:a", files, complete=False)
    # undated and never recorded: no first-seen time (one preset is not kept)
    assert got == {v: dataclasses.replace(f, first_seen_at=f.published_at)
                   for v, f in files.items()}


async def test_read_only_annotates_as_the_server_would_without_recording() -> None:
    records = Records()
    listing = _facts(900)
    checked = await FirstSeen(records, read_only=True,  # type: ignore[arg-type]
                              clock=NOW.timestamp).annotate(Ecosystem.NPM, "big", listing)
    assert records.records == {}
    served = await FirstSeen(records,  # type: ignore[arg-type]
                             clock=NOW.timestamp).annotate(Ecosystem.NPM, "big", listing)
    assert checked == served


async def test_annotate_lets_the_loop_run_between_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    copy = firstseen._with_first_seen

    def counted(fact: Facts, when: datetime | None) -> Facts:
        made.append(1)
        return copy(fact, when)

    monkeypatch.setattr(firstseen, "_with_first_seen", counted)
    seen = FirstSeen(Records(), clock=NOW.timestamp)  # type: ignore[arg-type]
    gaps: list[int] = []
    listing = _facts(5 * PART + 10)

    async def annotate() -> dict[str, Facts]:
        before = 0
        task = asyncio.ensure_future(seen.annotate(Ecosystem.NPM, "big", listing))
        while not task.done():  # how many versions were annotated between two turns
            gaps.append(len(made) - before)
            before = len(made)
            await asyncio.sleep(0)
        gaps.append(len(made) - before)
        return await task

    got, turns = await _ticking(annotate())
    assert len(got) == len(listing) == len(made)
    assert max(gaps) <= PART
    # first sight and the answer, each in parts: the loop ran between every two
    assert turns >= 2 * (len(listing) // PART)


@dataclasses.dataclass
class Odd:
    """An engine refusing odd patch versions, counting each call's versions."""

    revision: str = "odd"
    calls: list[int] = dataclasses.field(default_factory=list)

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict:
        if ref.version is not None and int(ref.version.rsplit(".", 1)[1]) % 2:
            return Verdict(Decision.BLOCK, f"odd-{self.revision}", "odd")
        return ALLOWED

    def explain(self, ref: PackageRef, facts: Facts) -> list[Verdict]:
        return [self.decide(ref, facts)]

    def filter_versions(self, name: PackageRef,
                        versions: Mapping[str, Facts]) -> dict[str, Verdict]:
        self.calls.append(len(versions))
        return {v: self.decide(PackageRef(name.ecosystem, name.name, v), f)
                for v, f in versions.items()}


async def test_deciding_in_parts_decides_as_at_once() -> None:
    ref = PackageRef(Ecosystem.NPM, "big")
    versions = _facts(1000)
    gate = Gate(Odd(), Metrics())
    at_once = gate.filter_versions(ref, versions)
    parts = await gate.filter_versions_in_parts(ref, versions, per=128)
    assert parts == at_once
    assert list(parts.verdicts) == list(versions)
    assert len(parts.hidden) == 500


async def test_a_real_policy_decides_in_parts_as_at_once() -> None:
    # a cooldown of 20 days, 30 days after OLD: versions dated later than ten days
    # after OLD (one an hour) are held, the others allowed
    policy = parse_policy("rules: {cooldown: {min_age: 20d}}", base_dir=Path("."),
                          now=lambda: OLD + timedelta(days=30))
    cooldown = [r for r in policy.rules if r.name == "cooldown"]  # (look-alikes: slow to build)
    real = Gate(build_engine(SimpleNamespace(rules=cooldown, revision="c")), Metrics())
    versions = _facts(500)
    named = PackageRef(Ecosystem.NPM, "stockade-parts-example")
    at_once = real.filter_versions(named, versions)
    assert await real.filter_versions_in_parts(named, versions, per=64) == at_once
    assert {v.rule for v in at_once.verdicts.values()} == {ALLOWED.rule, "cooldown"}


async def test_every_version_refused_hides_none_in_parts_too() -> None:
    ref = PackageRef(Ecosystem.NPM, "big")
    odd = {v: f for v, f in _facts(600).items() if int(v.rsplit(".", 1)[1]) % 2}
    decided = await Gate(Odd(), Metrics()).filter_versions_in_parts(ref, odd, per=64)
    assert decided.refused == frozenset(odd)
    assert decided.hidden == frozenset()


async def test_deciding_in_parts_lets_the_loop_run_with_one_engine() -> None:
    first, second = Odd(revision="a"), Odd(revision="b")
    gate = Gate(first, Metrics())
    versions = _facts(1000)

    async def swapped() -> Any:
        task = asyncio.ensure_future(
            gate.filter_versions_in_parts(PackageRef(Ecosystem.NPM, "big"), versions,
                                          per=100))
        await asyncio.sleep(0)
        gate.swap(second)  # a reload while the parts are decided
        return await task

    decided, turns = await _ticking(swapped())
    assert first.calls and max(first.calls) <= 100 and sum(first.calls) == 1000
    assert second.calls == []  # the engine in force when it started, for every part
    assert {v.rule for v in decided.verdicts.values()} == {"odd-a", ALLOWED.rule}
    assert turns >= len(first.calls) - 1
