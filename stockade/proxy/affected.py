"""Who is affected: re-deciding what was served when intel or policy changes.

Owns the work after each policy swap (a reload, a new bundle, fresh OSV data):
in the background, the artifact versions served within the webhook's window
(``notify.max_artifacts`` of them at most, the most recently served first) are
decided under the engine that was in force and the new one, on the facts the
server stored (as ``stockade audit`` decides: no upstream is asked). Each one the
new policy refuses and the old did not is recorded in the decision log and
notified (``notify``), naming the identities, teams and client addresses that
fetched it in the window. Changes that arrive during a pass are folded into the
next one, decided against the engine the previous pass ended with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stockade.policy.model import Ecosystem, PackageRef, Verdict
from stockade.proxy.admission import Admission
from stockade.proxy.gate import DecisionSink, PolicyEngine
from stockade.proxy.metrics import Metrics
from stockade.proxy.notify import Webhook
from stockade.proxy.served import Served, read_served, window_start

logger = logging.getLogger(__name__)

EVENT = "artifact.newly_refused"
_YIELD_EVERY = 50  # decisions between returns to the event loop


@dataclass(slots=True)
class Fetcher:
    """One caller's fetches of one artifact in the window."""

    identity: str | None
    team: str | None
    client: str
    first: float
    last: float
    count: int = 1


@dataclass(slots=True)
class ServedArtifact:
    """One artifact (ecosystem, name, version, file) and who fetched it."""

    ecosystem: str
    name: str
    version: str | None
    filename: str
    sha256: str
    last: float
    fetchers: dict[tuple[str | None, str | None, str], Fetcher] = field(default_factory=dict)

    def add(self, entry: Served) -> None:
        self.last = max(self.last, entry.time)
        key = (entry.identity, entry.team, entry.client)
        known = self.fetchers.get(key)
        if known is None:
            self.fetchers[key] = Fetcher(entry.identity, entry.team, entry.client,
                                         entry.time, entry.time)
        else:
            known.first, known.last = min(known.first, entry.time), max(known.last, entry.time)
            known.count += 1


def served_artifacts(folder: Path, *, since: float, most: int) -> list[ServedArtifact]:
    """The artifacts served since ``since``, the most recently served first, at most
    ``most`` of them (reads files: run it in a thread)."""
    found: dict[tuple[str, str, str | None, str], ServedArtifact] = {}
    for entry in read_served(folder, since=since):
        key = (entry.ecosystem, entry.name, entry.version, entry.filename)
        artifact = found.get(key)
        if artifact is None:
            if len(found) >= most * 2:  # bounded: keep the most recent half
                found = dict(sorted(found.items(), key=lambda kv: -kv[1].last)[:most])
            artifact = found[key] = ServedArtifact(entry.ecosystem, entry.name, entry.version,
                                                   entry.filename, entry.sha256, entry.time)
        artifact.add(entry)
    return sorted(found.values(), key=lambda a: -a.last)[:most]


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def payload(artifact: ServedArtifact, verdict: Verdict, revision: str,
            window_s: float) -> dict[str, Any]:
    """The notification body of one newly refused artifact."""
    fetchers = sorted(artifact.fetchers.values(), key=lambda f: (f.team or "", f.identity
                                                                 or "", f.client))
    return {
        "artifact": {"ecosystem": artifact.ecosystem, "name": artifact.name,
                     "version": artifact.version, "filename": artifact.filename,
                     "sha256": artifact.sha256},
        "decision": verdict.decision.value, "rule": verdict.rule, "reason": verdict.reason,
        "policy_revision": revision, "window_seconds": window_s,
        "fetched_by": [{"identity": f.identity, "team": f.team, "client": f.client,
                        "first": _iso(f.first), "last": _iso(f.last), "count": f.count}
                       for f in fetchers],
        "teams": sorted({f.team for f in fetchers if f.team}),
    }


class Reevaluator:
    """Runs the re-decision passes; ``changed`` is the gate's swap listener."""

    def __init__(self, admission: Admission, folder: Path, metrics: Metrics, *,
                 sink: DecisionSink | None, webhook: Webhook | None, window_s: float,
                 max_artifacts: int) -> None:
        self._admission = admission
        self._folder = folder
        self._metrics = metrics
        self._sink = sink
        self._webhook = webhook
        self._window_s = window_s
        self._max = max_artifacts
        self._baseline: PolicyEngine | None = None
        self._target: PolicyEngine | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # completed passes (tests wait on it)

    @property
    def admission(self) -> Admission:
        """The offline admission path the passes decide through."""
        return self._admission

    def changed(self, old: PolicyEngine, new: PolicyEngine) -> None:
        """A new engine is in force: re-decide in the background."""
        if self._baseline is None:
            self._baseline = old
        self._target = new
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reevaluate")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            old, new = self._baseline, self._target
            if old is None or new is None or old is new:
                continue
            try:
                await self.reevaluate(old, new)
            except Exception:  # a pass must never end the task: log, count, go on
                logger.exception("re-deciding served artifacts failed")
                self._metrics.reevaluations.labels("failed").inc()
            else:
                self._metrics.reevaluations.labels("done").inc()
            self._baseline = new
            self.passes += 1

    async def reevaluate(self, old: PolicyEngine, new: PolicyEngine) -> list[dict[str, Any]]:
        """Decide the served artifacts under ``old`` and ``new``; record and notify
        those ``new`` newly refuses. The notifications' bodies."""
        artifacts = await asyncio.to_thread(
            served_artifacts, self._folder, since=window_start(self._window_s), most=self._max)
        found = []
        for i, artifact in enumerate(artifacts):
            if i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # serving goes on between decisions
            try:
                ecosystem = Ecosystem(artifact.ecosystem)
            except ValueError:
                continue
            ref = PackageRef(ecosystem, artifact.name, artifact.version, artifact.filename)
            facts = await self._admission.facts(ref)
            verdict = new.decide(ref, facts)
            if not verdict.blocks or old.decide(ref, facts).blocks:
                continue
            body = payload(artifact, verdict, new.revision, self._window_s)
            found.append(body)
            self._metrics.newly_refused.labels(artifact.ecosystem, verdict.rule).inc()
            logger.warning("newly refused after a policy change: %s (%s) [%s] %s; fetched "
                           "by %d callers in the window", ref.display(), artifact.filename,
                           verdict.rule, verdict.reason, len(artifact.fetchers))
            if self._sink is not None:
                await self._sink.record(verdict, ref, client=_callers(body),
                                        request_id="re-evaluation")
            if self._webhook is not None:
                self._webhook.send(EVENT, body)
        return found


def _callers(body: Mapping[str, Any]) -> str:
    """Who fetched it, as the decision log's client field."""
    return ",".join(sorted({f["identity"] or f["client"] for f in body["fetched_by"]}))
