"""Putting a changed policy in force without a restart, and never failing open.

Owns watching the policy file and the OSV data its rules read (modification
time, size and inode, polled every ``policy.reload_check_s``) and SIGHUP,
building the new engine off the event loop, and swapping it into the gate only
when it was built without error.
An invalid new file is logged and counted; the running policy stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stockade.config.load import ConfigError
from stockade.config.model import Settings
from stockade.proxy.approvals_log import record_new, seen_path
from stockade.proxy.gate import Gate, PolicyEngine
from stockade.proxy.metrics import Metrics
from stockade.storage.errors import StorageError

logger = logging.getLogger(__name__)


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def file_stamps(paths: tuple[Path | None, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    """What changes when a file, or a folder's entries, change."""
    return tuple(_stamp(p) for p in paths)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What the last reload did: applied (``revision`` in force) or rejected (why)."""

    at: datetime
    reason: str
    applied: bool
    revision: str
    error: str | None = None


class PolicyReloader:
    """Rebuilds the engine when the policy file changes or on SIGHUP."""

    def __init__(
        self, settings: Settings, gate: Gate, metrics: Metrics,
        factory: Callable[[Settings], PolicyEngine],
    ) -> None:
        self._settings = settings
        self._gate = gate
        self._metrics = metrics
        self._factory = factory
        self._path = settings.policy.file
        self._stamp = file_stamps(self._watched())
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._signal = False
        self._lock = asyncio.Lock()
        self.last: ReloadOutcome | None = None  # None: no reload since the start
        # told of each outcome (the admin actions publish it to the other workers)
        self.on_outcome: Callable[[ReloadOutcome], Awaitable[None]] | None = None

    def _watched(self) -> tuple[Path | None, ...]:
        # The policy file, and the OSV folders and files its rules read.
        return (self._path, *getattr(self._gate.engine, "sources", ()))

    async def start(self) -> None:
        """Start watching; SIGHUP is handled where the loop allows signal handlers."""
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
            self._signal = True
        self._task = asyncio.create_task(self._watch(), name="policy-reloader")

    async def close(self) -> None:
        if self._signal:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        interval = self._settings.policy.reload_check_s
        while True:
            try:
                if interval > 0:
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
                else:
                    await self._wake.wait()
                reason = "SIGHUP"
            except TimeoutError:
                reason = "file changed"
                if file_stamps(self._watched()) == self._stamp:
                    continue
            self._wake.clear()
            await self.reload(reason)

    async def reload(self, reason: str = "requested") -> bool:
        """Build the engine again; swap it in only if that succeeded."""
        async with self._lock:
            stamp = file_stamps(self._watched())
            try:
                engine = await asyncio.to_thread(self._factory, self._settings)
            except (ConfigError, OSError, ValueError) as exc:
                self._stamp = stamp  # do not retry the same broken file every tick
                self._metrics.policy_reloads.labels("rejected").inc()
                text = exc.diagnostics() if isinstance(exc, ConfigError) else str(exc)
                logger.error("policy reload (%s) rejected, revision %s stays in force: %s",
                             reason, self._gate.revision, text)
                self.last = ReloadOutcome(datetime.now(UTC), reason, False,
                                          self._gate.revision, text)
                await self._told(self.last)
                return False
            self._metrics.policy_reloads.labels("applied").inc()
            if engine.revision != self._gate.revision:
                before = self._gate.engine
                self._gate.swap(engine)
                await record_new(self._gate, before, engine, seen_path(self._settings))
            self._stamp = file_stamps(self._watched())
            self.last = ReloadOutcome(datetime.now(UTC), reason, True, self._gate.revision)
            await self._told(self.last)
            return True

    async def _told(self, outcome: ReloadOutcome) -> None:
        if self.on_outcome is not None:
            try:
                await self.on_outcome(outcome)
            except (OSError, StorageError) as exc:  # the outcome stands; only its notice is lost
                logger.warning("cannot publish the policy reload's outcome: %s", exc)
