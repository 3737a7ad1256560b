"""When stockade first saw each version: a publish date upstreams cannot backdate.

Owns one small record per package (``version -> first seen``), kept with the
metadata. The first time a package is seen at all, its existing versions are
recorded with their upstream publish dates, or as long ago where the upstream
gives none (trust on first use: deploying stockade must not hold every existing
version back); a version that appears later is recorded with the time stockade
saw it, whatever date the upstream claims. The release-age rule uses the later
of the two, so even an ecosystem without dates in its metadata (Maven) gets a
cooldown for versions published after stockade started watching.

A version asked for by itself (one file, not the package's whole listing) that
the upstream gives no date for is not known to be new or old: it is left
without a first-seen time, and the release-age rule decides it as it decides a
missing date, until a listing of the package records it. Trust on first use
is only ever given to a listing.

Read-only (``stockade check`` and ``audit``), the record is not written, but
every version is answered as the server would answer it now: the same rule,
the same answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from stockade.policy.model import Ecosystem, Facts
from stockade.storage.errors import StorageError
from stockade.storage.records import Record, RecordStore

logger = logging.getLogger(__name__)

_MEMORY = 4096  # packages whose record is kept in memory
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)
# Versions annotated between two turns of the event loop: a packument of thousands
# of versions annotated at once held the loop for 150 ms and more, and every other
# request of the process waited.
PART = 256

_FIELDS = tuple(f.name for f in dataclasses.fields(Facts))
_AT = _FIELDS.index("first_seen_at")
_values = operator.attrgetter(*_FIELDS)


def _with_first_seen(fact: Facts, when: datetime | None) -> Facts:
    """``fact`` with ``first_seen_at`` set to ``when`` (``fact`` itself if it has it):
    ``dataclasses.replace`` without its per-call look-up of every field."""
    if fact.first_seen_at == when:
        return fact  # frozen: shared safely
    values = list(_values(fact))
    values[_AT] = when
    return Facts(*values)


def _key(ecosystem: Ecosystem, name: str) -> str:
    return f"{ecosystem.value}|{name}"


class FirstSeen:
    """First-seen times per (ecosystem, package, version)."""

    def __init__(self, refs: RecordStore, *, read_only: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self._refs = refs
        self._read_only = read_only
        self._clock = clock
        self._memory: OrderedDict[str, dict[str, str]] = OrderedDict()

    async def annotate(
        self, ecosystem: Ecosystem, name: str, facts: Mapping[str, Facts], *,
        only: str | None = None, complete: bool = True,
    ) -> dict[str, Facts]:
        """``facts`` with ``first_seen_at`` set, recording versions seen for the first time.

        ``complete`` says ``facts`` holds every version the upstream lists (a
        packument, an index page, maven-metadata.xml): only then is an unseen
        version of a known package new. From a single file request it may just
        be an old version nobody asked for yet, and keeps its own date.
        ``only`` limits the answer to one version (all are still recorded).
        Read-only, nothing is recorded and an unrecorded version has no time.
        """
        key = _key(ecosystem, name)
        seen = self._memory.get(key)
        if seen is None:
            record = await self._refs.get(key)
            seen = dict(record.get("versions", {})) if record else {}
            known_package = record is not None
        else:
            known_package = True
        now = datetime.fromtimestamp(self._clock(), UTC)
        if self._read_only:
            seen = dict(seen)  # answered as the server would, and not written
        # Versions seen for the first time, a part at a time, then added at once (a
        # call for the same package meanwhile may have added some: its times stay).
        unseen = [(v, f) for v, f in facts.items() if v not in seen]
        new: dict[str, str] = {}
        for start in range(0, len(unseen), PART):
            if start:
                await asyncio.sleep(0)
            for version, fact in unseen[start:start + PART]:
                when = _first_sight(fact, now, known_package=known_package,
                                    complete=complete)
                if when is not None:
                    new[version] = when.isoformat()
        for version, stamp in new.items():
            seen.setdefault(version, stamp)
        added = bool(new)
        if self._read_only:
            return await _annotated(self._wanted(facts, only), seen)
        if added:
            try:
                # Replicas share the record: a time already stored wins over ours.
                seen = (await self._refs.update(key, _merged(seen)))["versions"]
            except StorageError as exc:
                logger.warning("cannot record first-seen times of %s: %s", name, exc)
        self._memory[key] = seen
        self._memory.move_to_end(key)
        while len(self._memory) > _MEMORY:
            self._memory.popitem(last=False)
        return await _annotated(self._wanted(facts, only), seen)

    @staticmethod
    def _wanted(facts: Mapping[str, Facts], only: str | None) -> list[tuple[str, Facts]]:
        return list(facts.items()) if only is None else [(only, facts[only])]


async def _annotated(wanted: list[tuple[str, Facts]],
                     seen: Mapping[str, str]) -> dict[str, Facts]:
    """Each version's facts with its first-seen time from ``seen``, ``PART`` versions
    between two turns of the event loop."""
    out: dict[str, Facts] = {}
    for start in range(0, len(wanted), PART):
        if start:
            await asyncio.sleep(0)
        for version, fact in wanted[start:start + PART]:
            out[version] = _with_first_seen(fact, _parse(seen.get(version)))
    return out


def _first_sight(fact: Facts, now: datetime, *, known_package: bool,
                 complete: bool) -> datetime | None:
    """When a version seen for the first time counts as first seen, or None (unknown)."""
    if not known_package:
        # First sight of the package's listing: what exists already is taken as it
        # is, undated versions (Maven metadata has no dates) as old. One file alone
        # says nothing of the versions around it: only its own date counts.
        return fact.published_at or (_LONG_AGO if complete else None)
    if complete:
        return now  # new in the package's listing since stockade watched it
    # A single file of a known package: an old version nobody asked for yet keeps
    # its date; without one, it is neither known new nor known old.
    return fact.published_at


def _merged(seen: dict[str, str]) -> Callable[[Record | None], Record]:
    def merge(current: Record | None) -> Record:
        return {"versions": {**seen, **((current or {}).get("versions") or {})}}
    return merge


def _parse(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
