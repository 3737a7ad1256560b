"""Fresh OSV data: fetching osv.dev's per-ecosystem exports and swapping them in.

Owns ``stockade osv sync`` and the server's own sync (``osv.interval``): for each
configured ecosystem, a conditional GET (``If-None-Match``, ``If-Modified-Since``)
of ``<osv.url>/<Ecosystem>/all.zip`` streamed to a spool file beside the
destination (bounded by ``osv.max_bytes``), verified (a readable zip whose JSON
members are OSV records, at least one), then ``os.replace``d over
``osv-<Ecosystem>.zip`` in the folder the policy's ``osv`` rule reads. A failure
leaves the previous export in place. A running server's reloader notices the
changed folder and rebuilds the policy (a reload); reading OSV records is
``stockade.policy.osv``'s job.

The validators of each export (ETag, Last-Modified) and when it was last
confirmed are kept in ``osv-sync.json`` under ``storage.path`` (not in the
folder, whose every change is a reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml

from stockade.config.load import load_yaml
from stockade.config.model import OsvSyncSettings, Settings, UpstreamSettings
from stockade.policy.osv import parse_record
from stockade.proxy.errors import UpstreamError
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream

logger = logging.getLogger(__name__)

STATE = "osv-sync.json"
_MAX_RECORD_BYTES = 4 * 1024 * 1024


class OsvSyncError(Exception):
    """An export that was not swapped in; the message says why."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one ecosystem's sync did: ``updated``, ``unchanged`` or ``failed``."""

    ecosystem: str
    result: str
    detail: str = ""


def export_name(ecosystem: str) -> str:
    """The file an ecosystem's export is kept as."""
    return f"osv-{ecosystem}.zip"


def verify_export(path: Path) -> int:
    """How many OSV records the export zip at ``path`` holds.

    Raises:
        OsvSyncError: not a readable zip, a member that is not an OSV record, or
            no records at all.
    """
    count = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".json"):
                    continue
                if info.file_size > _MAX_RECORD_BYTES:
                    raise OsvSyncError(f"{info.filename}: a record over {_MAX_RECORD_BYTES} "
                                       "bytes")
                try:
                    parse_record(orjson.loads(archive.read(info)))
                except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
                    raise OsvSyncError(f"{info.filename}: not a valid OSV record: {exc}") from exc
                count += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise OsvSyncError(f"not a readable zip: {exc}") from exc
    if count == 0:
        raise OsvSyncError("the export holds no OSV records")
    return count


class OsvSync:
    """Syncs the configured exports into ``folder``."""

    def __init__(self, settings: OsvSyncSettings, folder: Path, *, state: Path,
                 metrics: Metrics, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._folder = folder
        self._state = state
        self._metrics = metrics
        self._upstream = Upstream(
            UpstreamSettings(name="osv", url=settings.url, read_timeout_s=settings.read_timeout_s,
                             unreachable_retry_s=0),
            metrics=metrics, environ=environ)
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> OsvSync:
        await self._upstream.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._upstream.close()

    async def sync(self) -> list[Outcome]:
        """Sync every configured ecosystem once; what each did."""
        async with self._lock:
            await asyncio.to_thread(self._folder.mkdir, parents=True, exist_ok=True)
            state = await asyncio.to_thread(self._read_state)
            outcomes = []
            for eco in self._settings.ecosystems:
                try:
                    outcomes.append(await self._one(eco, state))
                except (OsvSyncError, UpstreamError, OSError) as exc:
                    logger.error("OSV sync of %s failed, the previous data stays: %s", eco, exc)
                    outcomes.append(Outcome(eco, "failed", str(exc)))
                self._metrics.osv_syncs.labels(eco, outcomes[-1].result).inc()
            await asyncio.to_thread(self._write_state, state)
            return outcomes

    async def _one(self, eco: str, state: dict[str, dict[str, object]]) -> Outcome:
        known = state.get(eco, {})
        target = self._folder / export_name(eco)
        headers = {}
        if target.exists():
            if isinstance(known.get("etag"), str):
                headers["If-None-Match"] = str(known["etag"])
            if isinstance(known.get("last_modified"), str):
                headers["If-Modified-Since"] = str(known["last_modified"])
        spool = self._folder / f".{export_name(eco)}.partial"
        url = f"{self._settings.url}{eco}/all.zip"
        async with self._upstream.get(url, headers=headers) as response:
            if response.status == 304:
                known["checked"] = time.time()
                state[eco] = known
                return Outcome(eco, "unchanged")
            size = 0
            handle = await asyncio.to_thread(spool.open, "wb")
            try:
                async for chunk in response.iter_chunks():
                    size += len(chunk)
                    if size > self._settings.max_bytes:
                        raise OsvSyncError(f"{url}: more than osv.max_bytes "
                                           f"({self._settings.max_bytes})")
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            etag = response.headers.get("ETag")
            modified = response.headers.get("Last-Modified")
        try:
            records = await asyncio.to_thread(verify_export, spool)
            await asyncio.to_thread(os.replace, spool, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(spool.unlink)
        state[eco] = {"etag": etag, "last_modified": modified, "checked": time.time(),
                      "records": records}
        logger.info("OSV %s: %d records from %s swapped in", eco, records, url)
        return Outcome(eco, "updated", f"{records} records")

    def _read_state(self) -> dict[str, dict[str, object]]:
        try:
            raw = orjson.loads(self._state.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return {k: v for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) \
            else {}

    def _write_state(self, state: dict[str, dict[str, object]]) -> None:
        self._state.parent.mkdir(parents=True, exist_ok=True)
        partial = self._state.with_name(self._state.name + ".partial")
        partial.write_bytes(orjson.dumps(state, option=orjson.OPT_SORT_KEYS))
        os.replace(partial, self._state)

    async def run(self) -> None:
        """Sync every ``osv.interval`` seconds until cancelled (the server's task)."""
        assert self._settings.interval is not None
        while True:
            await self.sync()
            await asyncio.sleep(self._settings.interval)


def sync_folder(settings: Settings) -> Path | None:
    """Where exports go: ``osv.path``, else the first folder among the policy's
    ``rules.osv.paths`` (None: neither). Reads only the policy's YAML, not the
    records: validating the policy is the policy loader's job."""
    if settings.osv.path is not None:
        return settings.osv.path
    policy = settings.policy.file
    if policy is None:
        return None
    try:
        raw = load_yaml(policy.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
        return None
    rules = raw.get("rules") if isinstance(raw, dict) else None
    osv = rules.get("osv") if isinstance(rules, dict) else None
    paths = osv.get("paths") if isinstance(osv, dict) else None
    for entry in paths if isinstance(paths, list) else ():
        path = Path(str(entry))
        path = path if path.is_absolute() else policy.parent / path
        if path.is_dir():
            return path
    return None


def state_path(settings: Settings) -> Path:
    """Where the validators of the synced exports are kept."""
    return settings.storage.path / STATE


def osv_age(engine: object) -> float:
    """Seconds since the newest OSV record of ``engine``'s ``osv`` rule was modified
    (NaN: no such rule, or no dated record)."""
    for rule in getattr(engine, "rules", ()):
        database = getattr(rule, "database", None)
        if getattr(rule, "name", None) == "osv" and callable(database):
            newest = getattr(database(), "newest", None)
            if isinstance(newest, datetime):
                return max(0.0, (datetime.now(UTC) - newest).total_seconds())
    return math.nan
