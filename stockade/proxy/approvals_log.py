"""Recording approvals in the decision log when a running server puts them in force.

Owns finding the approvals a new engine has that the one before it had not
(``stockade approve`` and the web page write the file; the reloader sees it
change), and the record each gets: an ``allow`` of the ``typosquat`` rule naming
who approved it, until when and why. The server writes these records itself, so
the log's chain has one writer. An approval is recorded once, when it comes into
force: the ones already recorded are kept beside the decision log
(``decisions.approvals.json``, the approvals in force, rewritten atomically), so a
restart does not record them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from stockade.policy.approvals import Approval
from stockade.policy.model import Decision, PackageRef, Verdict
from stockade.proxy.gate import Gate, PolicyEngine

logger = logging.getLogger(__name__)

APPROVER = "stockade approve"  # the client the records name

if TYPE_CHECKING:
    from stockade.config.model import Settings

Key = tuple[str, str, str, str, str]  # ecosystem, name, until, reason, by


def seen_path(settings: Settings) -> Path:
    """Where the approvals already recorded in ``settings``' decision log are kept."""
    from stockade.proxy.app import decision_log_path  # the app imports this module

    log = decision_log_path(settings)
    return log.with_name(f"{log.stem}.approvals.json")


def _key(approval: Approval) -> Key:
    return (approval.ecosystem.value, approval.key[1], approval.until.isoformat(),
            approval.reason, approval.by)


def _read(path: Path) -> set[Key]:
    """The approvals recorded before; none where the file is missing or unreadable (they
    are then recorded again: a repeated record, never a lost one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s): approvals in force are recorded again",
                       path, exc)
        return set()
    if not isinstance(data, list):
        return set()
    return {tuple(item) for item in data
            if isinstance(item, list) and len(item) == 5
            and all(isinstance(x, str) for x in item)}


def _write(path: Path, keys: set[Key]) -> None:
    """Replace ``path`` with ``keys``, atomically (a new file renamed over it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(sorted(keys), fh)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot write %s (%s): a restart records the approvals in force "
                       "again", path, exc)


def approvals_of(engine: PolicyEngine | None) -> dict[tuple[object, ...], Approval]:
    """The approvals in force in ``engine``'s typosquat rules, by what they say."""
    found: dict[tuple[object, ...], Approval] = {}
    for rule in getattr(engine, "rules", ()) if engine is not None else ():
        current = getattr(rule, "approvals_in_force", None)
        if callable(current):
            for approval in current():
                found[(approval.key, approval.until, approval.reason, approval.by)] = approval
    return found


async def record_new(gate: Gate, before: PolicyEngine | None, after: PolicyEngine,
                     seen: Path | None = None) -> int:
    """Record the approvals ``after`` has in force that ``before`` had not, nor the
    file ``seen`` (where given: it is then rewritten with those in force); how many."""
    old = approvals_of(before)
    recorded = await asyncio.to_thread(_read, seen) if seen is not None else set()
    current = approvals_of(after)
    new = [a for key, a in current.items() if key not in old and _key(a) not in recorded]
    for approval in new:
        verdict = Verdict(Decision.ALLOW, "typosquat",
                          f'"{approval.name}" {approval.describe()}')
        logger.info("approval in force: %s %s", approval.ecosystem, verdict.reason)
        await gate.note(verdict, PackageRef(approval.ecosystem, approval.name),
                        client=APPROVER)
    now = {_key(a) for a in current.values()}
    if seen is not None and now != recorded:
        await asyncio.to_thread(_write, seen, now)
    return len(new)
