"""Known malicious and vulnerable versions, from OSV records loaded offline.

Owns reading OSV's export format (a per-ecosystem ``all.zip`` of JSON records,
or a folder of ``*.json``), indexing records by ecosystem and normalised name,
and deciding whether a version is affected: ``affected[].versions`` lists and
``ranges`` events (introduced, fixed, last_affected, limit) evaluated with each
ecosystem's own ordering. A malformed record is skipped and counted, never a
reason to fail the load.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize
from stockade.policy.times import timestamp
from stockade.policy.versions import parse_version

logger = logging.getLogger(__name__)

_ECOSYSTEMS = {"pypi": Ecosystem.PYPI, "npm": Ecosystem.NPM, "maven": Ecosystem.MAVEN}
SEVERITIES = ("low", "moderate", "high", "critical")
_MAX_RECORD_BYTES = 4 * 1024 * 1024


class OsvError(ValueError):
    """An OSV source that cannot be read at all (a missing path, a broken zip)."""


@dataclass(frozen=True, slots=True)
class Affected:
    """One ``affected`` entry, reduced to what deciding needs."""

    versions: frozenset[str]
    ranges: tuple[tuple[tuple[str, str], ...], ...]  # per range: (event kind, version)


@dataclass(frozen=True, slots=True)
class OsvRecord:
    """One advisory."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: str | None  # low | moderate | high | critical
    malicious: bool
    affected: tuple[Affected, ...]


def _severity(raw: dict[str, Any]) -> str | None:
    db = raw.get("database_specific")
    if isinstance(db, dict) and isinstance(db.get("severity"), str):
        value = str(db["severity"]).lower().replace("medium", "moderate")
        if value in SEVERITIES:
            return value
    for item in raw.get("severity") or ():
        if isinstance(item, dict) and isinstance(item.get("score"), str):
            score = _cvss_score(item.get("type", ""), item["score"])
            if score is not None:
                return _band(score)
    return None


def _cvss_score(kind: str, vector: str) -> float | None:
    try:
        if kind == "CVSS_V4" or vector.startswith("CVSS:4"):
            from cvss import CVSS4

            return float(CVSS4(vector).base_score)
        if kind == "CVSS_V3" or vector.startswith("CVSS:3"):
            from cvss import CVSS3

            return float(CVSS3(vector).scores()[0])
    except Exception:  # noqa: BLE001 - a vector the library rejects gives no score
        return None
    return None


def _band(score: float) -> str:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "moderate"
    return "low"


def _affected(eco: Ecosystem, raw: dict[str, Any]) -> Affected:
    versions = frozenset(str(v) for v in raw.get("versions") or () if isinstance(v, str))
    ranges = []
    for rng in raw.get("ranges") or ():
        if not isinstance(rng, dict) or rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        events = []
        for event in rng.get("events") or ():
            if isinstance(event, dict) and len(event) == 1:
                ((kind, version),) = event.items()
                if kind in ("introduced", "fixed", "last_affected", "limit"):
                    events.append((kind, str(version)))
        ranges.append(tuple(events))
    return Affected(versions, tuple(ranges))


def parse_record(raw: object) -> list[tuple[Ecosystem, str, OsvRecord]]:
    """The (ecosystem, normalised name, record) entries of one OSV JSON record."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise ValueError("not an OSV record (no id)")
    if raw.get("withdrawn"):
        return []
    ident = raw["id"]
    aliases = tuple(a for a in raw.get("aliases") or () if isinstance(a, str))
    db = raw.get("database_specific")
    malicious = ident.startswith("MAL-") or any(a.startswith("MAL-") for a in aliases) or (
        isinstance(db, dict) and "malicious-packages-origins" in db
    )
    by_package: dict[tuple[Ecosystem, str], list[Affected]] = {}
    for item in raw.get("affected") or ():
        package = item.get("package") if isinstance(item, dict) else None
        if not isinstance(package, dict):
            continue
        eco = _ECOSYSTEMS.get(str(package.get("ecosystem", "")).split(":")[0].lower())
        name = package.get("name")
        if eco is None or not isinstance(name, str):
            continue
        by_package.setdefault((eco, normalize(eco, name)), []).append(_affected(eco, item))
    summary = str(raw.get("summary") or raw.get("details") or "")[:200].strip()
    return [
        (eco, name, OsvRecord(ident, aliases, summary, _severity(raw), malicious, tuple(aff)))
        for (eco, name), aff in by_package.items()
    ]


def is_affected(eco: Ecosystem, version: str, affected: Affected) -> bool:
    """Whether ``version`` falls in one ``affected`` entry (OSV's evaluation rules)."""
    if version in affected.versions:
        return True
    parsed = parse_version(eco, version)
    if parsed is None:
        return False
    return any(_in_range(eco, parsed, events) for events in affected.ranges)


def _in_range(eco: Ecosystem, parsed: Any, events: tuple[tuple[str, str], ...]) -> bool:
    limits = [parse_version(eco, v) for k, v in events if k == "limit"]
    if any(lim is not None and parsed >= lim for lim in limits):
        return False
    ordered: list[tuple[Any, str]] = []
    for kind, raw in events:
        if kind == "limit":
            continue
        if kind == "introduced" and raw == "0":
            ordered.append((None, kind))
            continue
        point = parse_version(eco, raw)
        if point is None:
            return False  # a range this ordering cannot place is not trusted either way
        ordered.append((point, kind))
    ordered.sort(key=lambda item: (item[0] is not None, item[0] if item[0] is not None else 0))
    affected = False
    for point, kind in ordered:
        if kind == "introduced" and (point is None or parsed >= point):
            affected = True
        elif point is not None and (
            (kind == "fixed" and parsed >= point) or (kind == "last_affected" and parsed > point)
        ):
            affected = False
    return affected


@dataclass
class OsvDatabase:
    """OSV records by (ecosystem, normalised name)."""

    records: dict[tuple[Ecosystem, str], list[OsvRecord]] = field(default_factory=dict)
    skipped: int = 0
    revision: str = "empty"
    # the newest ``modified`` time among the records: how fresh the data is
    newest: datetime | None = None

    def add(self, raw: object) -> None:
        modified = timestamp(raw.get("modified")) if isinstance(raw, dict) else None
        if modified is not None and (self.newest is None or modified > self.newest):
            self.newest = modified
        try:
            entries = parse_record(raw)
        except (ValueError, TypeError, AttributeError) as exc:
            self.skipped += 1
            logger.warning("skipping an OSV record: %s", exc)
            return
        for eco, name, record in entries:
            self.records.setdefault((eco, name), []).append(record)

    def affecting(self, eco: Ecosystem, name: str, version: str) -> list[OsvRecord]:
        """Every record that affects ``name`` at ``version``."""
        found = []
        for record in self.records.get((eco, normalize(eco, name)), ()):
            if any(is_affected(eco, version, a) for a in record.affected):
                found.append(record)
        return found

    def malicious_names(self, eco: Ecosystem, name: str) -> list[OsvRecord]:
        """Malware records that affect every version (``introduced: 0`` and no fix)."""
        out = []
        for record in self.records.get((eco, normalize(eco, name)), ()):
            if record.malicious and any(
                events == (("introduced", "0"),) for a in record.affected for events in a.ranges
            ):
                out.append(record)
        return out

    @classmethod
    def load(cls, paths: Iterable[Path]) -> OsvDatabase:
        """Load every record under ``paths`` (zips and folders).

        Raises:
            OsvError: a path is missing or a zip cannot be opened.
        """
        db = cls()
        digest = hashlib.sha256()
        for path in paths:
            for name, data in _documents(path):
                digest.update(name.encode())
                digest.update(hashlib.sha256(data).digest())
                try:
                    db.add(orjson.loads(data))
                except orjson.JSONDecodeError:
                    db.skipped += 1
                    logger.warning("skipping %s: not JSON", name)
        db.revision = digest.hexdigest()[:12]
        return db


def _documents(path: Path) -> Iterator[tuple[str, bytes]]:
    if not path.exists():
        raise OsvError(f"{path}: no such file or folder")
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in (".json", ".zip"):
                yield from _documents(child) if child.suffix == ".zip" else [
                    (str(child), child.read_bytes()[:_MAX_RECORD_BYTES])
                ]
        return
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith(".json") and info.file_size <= _MAX_RECORD_BYTES:
                        yield f"{path}:{info.filename}", archive.read(info)
        except zipfile.BadZipFile as exc:
            raise OsvError(f"{path}: not a readable zip: {exc}") from exc
        return
    yield str(path), path.read_bytes()[:_MAX_RECORD_BYTES]

