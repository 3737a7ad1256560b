"""The proxy's side of policy: asking the engine, counting, recording, reloading.

Owns the running engine (swapped atomically on reload, kept when a new policy
file is invalid), the ``stockade_policy_decisions_total`` counter and the
decision log. Deciding itself is ``stockade.policy``'s job and does no I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Verdict
from stockade.proxy.metrics import Metrics
from stockade.proxy.warmrecord import note

logger = logging.getLogger(__name__)

# Versions decided between two turns of the event loop (``filter_versions_in_parts``).
PART = 256


class PolicyEngine(Protocol):
    """What the proxy needs from ``stockade.policy.engine.Engine``."""

    @property
    def revision(self) -> str: ...

    def decide(self, ref: PackageRef, facts: Facts) -> Verdict: ...

    def explain(self, ref: PackageRef, facts: Facts) -> list[Verdict]: ...

    def filter_versions(
        self, name: PackageRef, versions: Mapping[str, Facts]
    ) -> dict[str, Verdict]: ...


class DecisionSink(Protocol):
    """Where refusals and audit hits are recorded (the decision log)."""

    async def record(self, verdict: Verdict, ref: PackageRef, *, client: str,
                     request_id: str, versions: Sequence[str] = (), identity: str = "",
                     team: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class VersionFilter:
    """The outcome of deciding every version of a package, and the facts it was made on."""

    verdicts: dict[str, Verdict]
    hidden: frozenset[str]
    refused: frozenset[str]
    facts: Mapping[str, Facts]

    def header(self) -> str | None:
        """``X-Stockade-Filtered`` value: how many versions were hidden, by which rules."""
        if not self.hidden:
            return None
        rules = sorted({self.verdicts[v].rule for v in self.hidden})
        return f"{len(self.hidden)} versions hidden by rules: {', '.join(rules)}"


class Gate:
    """The current engine plus the bookkeeping around each decision."""

    def __init__(
        self, engine: PolicyEngine, metrics: Metrics, sink: DecisionSink | None = None
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._sink = sink
        self._listeners: list[Callable[[PolicyEngine, PolicyEngine], None]] = []
        # labels() takes a lock and checks its arguments each call: the counter's
        # children are kept per (ecosystem, rule, decision, mode), a handful in all
        self._counted: dict[tuple[str, str, str, str], Any] = {}

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    @property
    def revision(self) -> str:
        return self._engine.revision

    def engine_for(self, team: str | None) -> PolicyEngine:
        """The engine deciding for ``team``: the global policy plus the team's own
        (built with the policy; the global engine for no team or an unknown one)."""
        if team is None:
            return self._engine
        for_team = getattr(self._engine, "for_team", None)
        return self._engine if for_team is None else cast(PolicyEngine, for_team(team))

    def swap(self, engine: PolicyEngine) -> None:
        """Put a new engine in force (after it was built without error)."""
        logger.info("policy revision %s in force (was %s)", engine.revision,
                    self._engine.revision)
        old, self._engine = self._engine, engine
        for listener in self._listeners:
            listener(old, engine)

    def on_swap(self, listener: Callable[[PolicyEngine, PolicyEngine], None]) -> None:
        """Call ``listener(old, new)`` after each swap (it must not block)."""
        self._listeners.append(listener)

    async def decide(
        self, ref: PackageRef, facts: Facts, *, client: str = "", request_id: str = "",
        identity: str = "", team: str | None = None,
    ) -> Verdict:
        """Decide one name or version for ``team``'s policy, counting and recording what
        refuses (with who asked)."""
        verdict = self.decide_allowed(ref, facts, team=team)
        if verdict.decision is not Decision.ALLOW:
            await self._account(verdict, ref, client=client, request_id=request_id,
                                identity=identity, team=team)
        return verdict

    def decide_allowed(self, ref: PackageRef, facts: Facts, *,
                       team: str | None = None) -> Verdict:
        """``decide`` up to what needs a coroutine: an ALLOW is counted here; any other
        verdict the caller must ``account`` (the warm memo, whose decisions are nearly
        all ALLOW, then makes no coroutine for them)."""
        verdict = self.engine_for(team).decide(ref, facts)
        taken = note()
        if taken is not None:  # a warm request repeats this decision (``warmmemo``)
            taken.decided(ref, facts)
        if verdict.decision is Decision.ALLOW:
            self._count(ref, verdict)
        return verdict

    def count_allowed(self, verdict: Verdict, ref: PackageRef) -> None:
        """Count an ALLOW decided with ``engine_for`` as ``account`` would (an ALLOW is
        counted, never recorded)."""
        assert verdict.decision is Decision.ALLOW
        self._count(ref, verdict)

    async def account(self, verdict: Verdict, ref: PackageRef, *, client: str = "",
                      request_id: str = "", identity: str = "",
                      team: str | None = None) -> None:
        """Count and record ``verdict`` as ``decide`` does, where the caller decided it
        with ``engine_for(team)`` itself (a warm page checks its decisions before it
        answers, and counts the same ones rather than deciding twice)."""
        await self._account(verdict, ref, client=client, request_id=request_id,
                            identity=identity, team=team)

    async def note(self, verdict: Verdict, ref: PackageRef, *, client: str = "",
                   request_id: str = "", identity: str = "", team: str | None = None) -> None:
        """Record ``verdict`` in the decision log, neither decided nor counted (an
        approval put in force, a cache purge)."""
        if self._sink is not None:
            await self._sink.record(verdict, ref, client=client, request_id=request_id,
                                    identity=identity, team=team)

    async def _account(self, verdict: Verdict, ref: PackageRef, *, client: str,
                       request_id: str, identity: str = "", team: str | None = None) -> None:
        self._count(ref, verdict)
        if verdict.decision is Decision.ALLOW:
            return
        logger.info("policy %s %s %s: %s", verdict.decision, ref.ecosystem,
                    ref.display(), verdict.reason)
        if self._sink is not None:
            await self._sink.record(verdict, ref, client=client, request_id=request_id,
                                    identity=identity, team=team)

    def _count(self, ref: PackageRef, verdict: Verdict, n: int = 1) -> None:
        mode = Mode.AUDIT if verdict.audit_only else Mode.ENFORCE
        key = (ref.ecosystem, verdict.rule, verdict.decision, mode)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self._metrics.policy_decisions.labels(*key)
        self._metrics.tally.inc(child, n)

    async def record_versions(self, name: PackageRef, decided: VersionFilter, *,
                              client: str = "", request_id: str = "", identity: str = "",
                              team: str | None = None) -> None:
        """Count and record what one metadata decision refused or hid: one record per
        rule, listing its versions (called once per document version, not per request).
        """
        by_rule: dict[tuple[str, bool], list[str]] = {}
        for version, verdict in decided.verdicts.items():
            if verdict.decision is not Decision.ALLOW:
                by_rule.setdefault((verdict.rule, verdict.audit_only), []).append(version)
        for (rule, audit_only), versions in sorted(by_rule.items()):
            first = decided.verdicts[versions[0]]
            hidden = sum(v in decided.hidden for v in versions)
            what = "would hide" if audit_only else "hides" if hidden else \
                "lets through, noted," if first.decision is Decision.WARN else "refuses"
            # a hold or a look-alike noted: the rule's own sentence says why and until when
            why = f": {first.reason}" if first.decision in (Decision.WARN, Decision.HOLD) \
                else ""
            summary = Verdict(first.decision, rule,
                              f"{what} {len(versions)} versions of {name.name} "
                              f"({_listed(versions)}){why}", first.target, audit_only,
                              until=first.until)
            self._count(name, summary, len(versions))
            logger.info("policy %s %s %s: %s", summary.decision, name.ecosystem, name.name,
                        summary.reason)
            if self._sink is not None:
                await self._sink.record(summary, name, client=client, request_id=request_id,
                                        versions=sorted(versions), identity=identity,
                                        team=team)

    def filter_versions(self, name: PackageRef, versions: Mapping[str, Facts],
                        team: str | None = None) -> VersionFilter:
        """Decide every version (for ``team``'s policy); refused ones are hidden unless
        none would be left.

        Where every version is refused, none is hidden: Python clients only print
        the reason of a refused download, so the files stay listed and their
        download is refused with the reason.
        """
        return _filtered(self.engine_for(team).filter_versions(name, versions), versions)

    async def filter_versions_in_parts(
        self, name: PackageRef, versions: Mapping[str, Facts], team: str | None = None,
        *, per: int = PART,
    ) -> VersionFilter:
        """``filter_versions``, ``per`` versions between two turns of the event loop.

        Each version is decided on its own facts, so deciding in parts decides as
        at once. The engine is the one in force when it starts, for every part (a
        reload meanwhile does not mix two policies in one answer). In the event loop
        rather than a thread: a thread deciding thousands of versions holds the
        interpreter against the loop for as long, in slices the loop cannot bound.
        """
        engine = self.engine_for(team)
        items = list(versions.items())
        verdicts: dict[str, Verdict] = {}
        for start in range(0, len(items), per):
            if start:
                await asyncio.sleep(0)
            verdicts.update(engine.filter_versions(name, dict(items[start:start + per])))
        return _filtered(verdicts, versions)


def _filtered(verdicts: dict[str, Verdict], versions: Mapping[str, Facts]) -> VersionFilter:
    """The versions hidden and refused by ``verdicts`` (none hidden where all are)."""
    refused = frozenset(v for v, verdict in verdicts.items() if verdict.blocks)
    kept = set(versions) - refused
    hidden = refused if kept else frozenset()
    return VersionFilter(verdicts, hidden, refused, versions)


def _listed(versions: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(sorted(versions)[:most])
    return shown if len(versions) <= most else f"{shown} and {len(versions) - most} more"
