"""What was served: the served-artifacts record as JSON or a CycloneDX SBOM.

Owns ``stockade inventory``'s documents: the artifacts served in a time range
(optionally to one team or identity), each with its package URL, sha256, who
fetched it, and the provenance results the server verified for its version.
The CycloneDX document is built with ``cyclonedx-python-lib`` (spec 1.6):
one component per file, its purl, its SHA-256 hash, and ``stockade:``
properties for the fetchers and provenance. Reading the record is ``served``'s
job; provenance results come from the store ``ProvenanceChecker`` keeps.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from stockade import __version__
from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize
from stockade.proxy.served import Served

# Provenance results of a (ecosystem, name, version): a list of {kind, result, detail}.
ProvenanceLookup = Callable[[Ecosystem, str, str], Awaitable[list[dict[str, str]] | None]]


@dataclass(slots=True)
class Item:
    """One served file and everyone who fetched it in the range."""

    ecosystem: str
    name: str
    version: str | None
    filename: str
    sha256: str
    fetched_by: dict[tuple[str | None, str | None, str], list[float]] = field(
        default_factory=dict)
    provenance: list[dict[str, str]] | None = None

    @property
    def purl(self) -> PackageURL:
        return purl(self.ecosystem, self.name, self.version, self.filename)


def purl(ecosystem: str, name: str, version: str | None, filename: str) -> PackageURL:
    """The package URL of one served file (purl-spec's pypi, npm and maven types)."""
    if ecosystem == Ecosystem.NPM.value:
        scope, _, bare = name.rpartition("/")
        return PackageURL("npm", scope or None, bare, version)
    if ecosystem == Ecosystem.MAVEN.value:
        group, _, artifact = name.partition(":")
        ext = PurePosixPath(filename).suffix.lstrip(".")
        return PackageURL("maven", group, artifact, version,
                          {"type": ext} if ext and ext != "jar" else None)
    return PackageURL("pypi", None, normalize(Ecosystem.PYPI, name), version,
                      {"file_name": filename})


def collect(entries: Iterable[Served], *, team: str | None = None,
            identity: str | None = None) -> list[Item]:
    """The served files of ``entries`` (filtered to ``team`` / ``identity``), sorted."""
    items: dict[tuple[str, str, str | None, str, str], Item] = {}
    for entry in entries:
        if team is not None and entry.team != team:
            continue
        if identity is not None and entry.identity != identity:
            continue
        key = (entry.ecosystem, entry.name, entry.version, entry.filename, entry.sha256)
        item = items.get(key)
        if item is None:
            item = items[key] = Item(*key)
        item.fetched_by.setdefault((entry.identity, entry.team, entry.client), []).append(
            entry.time)
    return [items[k] for k in sorted(items, key=lambda k: tuple(str(p) for p in k))]


async def add_provenance(items: list[Item], lookup: ProvenanceLookup) -> None:
    """Fill in each item's provenance results (once per version)."""
    known: dict[tuple[str, str, str], list[dict[str, str]] | None] = {}
    for item in items:
        if item.version is None:
            continue
        key = (item.ecosystem, item.name, item.version)
        if key not in known:
            known[key] = await lookup(Ecosystem(item.ecosystem), item.name, item.version)
        item.provenance = known[key]


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _fetchers(item: Item) -> list[dict[str, Any]]:
    return [{"identity": who, "team": team, "client": client, "count": len(times),
             "first": _iso(min(times)), "last": _iso(max(times))}
            for (who, team, client), times in sorted(
                item.fetched_by.items(), key=lambda kv: tuple(str(p) for p in kv[0]))]


def as_json(items: list[Item], *, since: datetime, until: datetime,
            team: str | None) -> dict[str, Any]:
    """The inventory as a plain JSON document."""
    return {
        "since": since.isoformat(), "until": until.isoformat(), "team": team,
        "artifacts": [{
            "ecosystem": i.ecosystem, "name": i.name, "version": i.version,
            "filename": i.filename, "sha256": i.sha256, "purl": i.purl.to_string(),
            "fetched_by": _fetchers(i), "provenance": i.provenance,
        } for i in items],
    }


def as_cyclonedx(items: list[Item], *, since: datetime, until: datetime,
                 team: str | None) -> str:
    """The inventory as a CycloneDX 1.6 JSON SBOM."""
    bom = Bom()
    bom.metadata.timestamp = until
    # A flat list of what was served: no root component, whose dependency graph
    # (who pulled what in) the proxy cannot know.
    bom.metadata.properties.add(Property(name="stockade:version", value=__version__))
    bom.metadata.properties.add(Property(name="stockade:since", value=since.isoformat()))
    bom.metadata.properties.add(Property(name="stockade:until", value=until.isoformat()))
    if team is not None:
        bom.metadata.properties.add(Property(name="stockade:team", value=team))
    for item in items:
        ref = item.purl
        properties = [Property(name="stockade:ecosystem", value=item.ecosystem),
                      Property(name="stockade:filename", value=item.filename)]
        for fetcher in _fetchers(item):
            who = fetcher["identity"] or fetcher["client"]
            properties.append(Property(
                name="stockade:fetched_by",
                value=f"{who} team={fetcher['team'] or '-'} client={fetcher['client']} "
                      f"count={fetcher['count']} first={fetcher['first']} "
                      f"last={fetcher['last']}"))
        for result in item.provenance or ():
            properties.append(Property(name=f"stockade:provenance:{result['kind']}",
                                       value=result["result"]))
        bom.components.add(Component(
            name=ref.name, group=ref.namespace, version=item.version, purl=ref,
            bom_ref=f"{ref.to_string()}#{item.filename}", type=ComponentType.LIBRARY,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=item.sha256)],
            properties=properties))
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + os.linesep
