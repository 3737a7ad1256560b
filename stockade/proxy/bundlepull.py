"""A replica's side of signed bundles: pull with TUF, apply like a reload, keep the last good.

Owns ``policy.bundle``: every ``interval`` seconds python-tuf's ngclient
refreshes the repository's metadata (root chain, timestamp, snapshot, targets:
rollback, freeze and mix-and-match protection) and, when the bundle's hash
changed, downloads it (length and hash enforced), unpacks it, builds the engine
from it off the event loop and swaps it into the gate. Any failure leaves the
running policy and the last good bundle in force and counts
``stockade_bundle_errors_total{reason}``.

ngclient does blocking I/O: each pull runs in a thread, serialised by an
asyncio lock in the process and a file lock across worker processes (its
metadata folder is single-writer). Deciding is the engine's job; the bundle
format is ``stockade.fleet.bundle``'s.

Under ``storage.path/bundle/``: ``tuf/`` (trusted metadata and downloads),
``applied/<sha256>/`` (unpacked bundles: the current and the one before, whose
files an engine still in use may read) and ``current.json`` (which one is in
force, its version, and when the repository last confirmed it), so a restart
starts from the last good bundle without asking the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from stockade import __version__
from stockade.config.load import ConfigError
from stockade.config.model import BundleSettings, Settings
from stockade.fleet.bundle import POLICY, BundleError, unpack
from stockade.proxy.gate import Gate, PolicyEngine
from stockade.proxy.metrics import Metrics

if TYPE_CHECKING:
    from tuf.ngclient import Updater

logger = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], PolicyEngine]
_KEEP_APPLIED = 2


class PullError(Exception):
    """A pull that put nothing new in force; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Current:
    """The bundle in force."""

    sha256: str
    version: int
    verified: float  # when the repository last confirmed it (epoch seconds)


def _text(exc: BaseException) -> str:
    cause = exc.__cause__
    text = str(exc) or (str(cause) if cause is not None else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def with_policy_file(settings: Settings, path: Path) -> Settings:
    """``settings`` whose policy file is ``path``."""
    return settings.model_copy(
        update={"policy": settings.policy.model_copy(update={"file": path})})


class BundlePuller:
    """Pulls and applies the configured bundle on an interval."""

    def __init__(self, settings: Settings, metrics: Metrics, factory: EngineFactory) -> None:
        assert settings.policy.bundle is not None
        self._config: BundleSettings = settings.policy.bundle
        self._settings = settings
        self._gate: Gate | None = None
        self._metrics = metrics
        self._factory = factory
        self._dir = settings.storage.path / "bundle"
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._started = time.time()
        self.current = self._read_current()
        metrics.bundle_age.set_function(self._age)
        if self.current is not None:
            metrics.bundle_version.set(self.current.version)

    # --- the engine factory: the applied bundle's policy, else the local file

    def policy_path(self) -> Path | None:
        """The policy file of the bundle in force (None before the first)."""
        if self.current is None:
            return None
        return self._dir / "applied" / self.current.sha256 / POLICY

    def factory(self) -> EngineFactory:
        """An engine factory (for the reloader too) reading the bundle in force."""
        def build(settings: Settings) -> PolicyEngine:
            path = self.policy_path()
            return self._factory(settings if path is None else with_policy_file(settings, path))
        return build

    def _age(self) -> float:
        # Before any bundle was applied: the time since this process started trying.
        since = self.current.verified if self.current is not None else self._started
        return max(0.0, time.time() - since)

    # --- life

    async def start(self, gate: Gate) -> None:
        """Pull now and every ``interval`` seconds, swapping new engines into ``gate``."""
        self._gate = gate
        self._task = asyncio.create_task(self._loop(), name="bundle-puller")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await self.pull()
            await asyncio.sleep(self._config.interval)

    async def pull(self) -> str | None:
        """Check the repository once and apply a new bundle; None when all went
        well, else the reason it failed (counted and logged)."""
        async with self._lock:
            try:
                await self._pull()
            except PullError as exc:
                self._metrics.bundle_errors.labels(exc.reason).inc()
                logger.error("policy bundle not updated (%s), %s stays in force: %s",
                             exc.reason, self._describe(), exc)
                return exc.reason
        return None

    def _describe(self) -> str:
        if self.current is None:
            return "the local policy"
        return f"bundle version {self.current.version}"

    async def _pull(self) -> None:
        found, version, folder = await asyncio.to_thread(self._fetch)
        if self.current is not None and found == self.current.sha256:
            await self._set_current(Current(found, version, time.time()))
            return
        assert folder is not None
        try:
            engine = await asyncio.to_thread(
                self._factory, with_policy_file(self._settings, folder / POLICY))
        except (ConfigError, OSError, ValueError) as exc:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            text = exc.diagnostics() if isinstance(exc, ConfigError) else str(exc)
            raise PullError("invalid_bundle", f"the bundle's policy does not load: {text}"
                            ) from exc
        await self._set_current(Current(found, version, time.time()))
        assert self._gate is not None
        self._gate.swap(engine)
        self._metrics.bundle_version.set(version)
        logger.info("policy bundle version %d (sha256 %s) in force, revision %s",
                    version, found[:12], engine.revision)
        await asyncio.to_thread(self._prune)

    # --- in a thread

    def _fetch(self) -> tuple[str, int, Path | None]:
        """Refresh, and download and unpack a bundle the one in force is not;
        its sha256, targets version and folder (None: unchanged)."""
        # python-tuf (and the cloud signers its key library loads, boto3 among them)
        # costs about half a second of every start: imported when a bundle is pulled
        from stockade.proxy.bundletuf import classify, tuf_errors

        tuf_dir = self._dir / "tuf"
        (tuf_dir / "metadata").mkdir(parents=True, exist_ok=True)
        (tuf_dir / "targets").mkdir(exist_ok=True)
        with (self._dir / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            updater = self._updater(tuf_dir)
            try:
                updater.refresh()
                info = updater.get_targetinfo(self._config.target)
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                raise PullError(classify(exc, phase="metadata"), _text(exc)) from exc
            if info is None:
                raise PullError("missing_target",
                                f"the repository lists no target {self._config.target!r}")
            sha256 = info.hashes.get("sha256")
            if sha256 is None:
                raise PullError("repository", "the bundle's target has no sha256")
            version = self._targets_version(tuf_dir)
            if self.current is not None and sha256 == self.current.sha256:
                return sha256, version, None
            try:
                path = updater.find_cached_target(info) or updater.download_target(info)
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                raise PullError(classify(exc, phase="target"), _text(exc)) from exc
            folder = self._dir / "applied" / sha256
            shutil.rmtree(folder, ignore_errors=True)
            try:
                unpack(Path(path), folder)
            except BundleError as exc:
                raise PullError("invalid_bundle", str(exc)) from exc
            return sha256, version, folder

    def _updater(self, tuf_dir: Path) -> Updater:
        meta = tuf_dir / "metadata"
        bootstrap = None
        if not (meta / "root.json").exists():
            try:
                bootstrap = self._config.trusted_root.read_bytes()
            except OSError as exc:
                raise PullError("trusted_root", f"policy.bundle.trusted_root: {exc}") from exc
        from stockade.proxy.bundletuf import (  # imported here: see _fetch
            FileFetcher,
            Updater,
            UpdaterConfig,
            tuf_errors,
        )

        fetcher = FileFetcher() if self._config.url.startswith("file:") else None
        try:
            return Updater(metadata_dir=str(meta), metadata_base_url=self._config.url + "metadata/",
                           target_dir=str(tuf_dir / "targets"),
                           target_base_url=self._config.url + "targets/", fetcher=fetcher,
                           config=UpdaterConfig(app_user_agent=f"stockade/{__version__}"),
                           bootstrap=bootstrap)
        except (tuf_errors.RepositoryError, ValueError) as exc:
            raise PullError("trusted_root", f"the trusted root is not usable: {exc}") from exc

    @staticmethod
    def _targets_version(tuf_dir: Path) -> int:
        # ngclient keeps the targets metadata it trusts in its metadata folder.
        from stockade.proxy.bundletuf import Metadata  # see _fetch

        return Metadata.from_file(str(tuf_dir / "metadata" / "targets.json")).signed.version

    def _read_current(self) -> Current | None:
        try:
            raw = orjson.loads((self._dir / "current.json").read_bytes())
            current = Current(str(raw["sha256"]), int(raw["version"]), float(raw["verified"]))
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if not (self._dir / "applied" / current.sha256 / POLICY).is_file():
            return None
        return current

    async def _set_current(self, current: Current) -> None:
        await asyncio.to_thread(self._write_current, current)
        self.current = current

    def _write_current(self, current: Current) -> None:
        data = orjson.dumps({"sha256": current.sha256, "version": current.version,
                             "verified": current.verified})
        partial = self._dir / "current.json.partial"
        partial.write_bytes(data)
        os.replace(partial, self._dir / "current.json")

    def _prune(self) -> None:
        applied = self._dir / "applied"
        folders = sorted(applied.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        keep = {self.current.sha256} if self.current else set()
        for folder in folders:
            if folder.name in keep:
                continue
            if len(keep) < _KEEP_APPLIED:
                keep.add(folder.name)
                continue
            shutil.rmtree(folder, ignore_errors=True)
