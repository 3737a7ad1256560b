"""The page's way to approve or extend a hold: one adapter over the approvals store.

Owns the call the approve form makes, with the signature of
``stockade.policy.approvals`` (``approve(path, ecosystem, name, *, until, reason,
by)`` and ``load(path)``, the module ``stockade approve`` writes through). Where
that module is installed, it is used; until then a JSON file of the same
entries is kept here, so the page works on its own and changes nothing when the
policy side arrives. Blocking file work: callers run it off the event loop.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True, slots=True)
class Approval:
    """A hold lifted for a name until a time, by someone, for a reason."""

    ecosystem: str
    name: str
    until: datetime
    reason: str
    by: str


class ApprovalError(Exception):
    """An approval that cannot be recorded; the message says why."""


def _policy_module() -> ModuleType | None:
    try:
        return importlib.import_module("stockade.policy.approvals")
    except ModuleNotFoundError:
        return None


def approve(path: Path, ecosystem: str, name: str, *, until: datetime, reason: str,
            by: str) -> None:
    """Record that ``name`` may pass its hold until ``until`` (a later approval of
    the same name extends or replaces the earlier one).

    Raises:
        ApprovalError: the approvals file cannot be read or written.
    """
    module = _policy_module()
    if module is not None:
        module.approve(path, ecosystem, name, until=until, reason=reason, by=by)
        return
    entries = [a for a in load(path) if (a.ecosystem, a.name) != (ecosystem, name)]
    entries.append(Approval(ecosystem, name, until, reason, by))
    data = {"approvals": [{**asdict(a), "until": a.until.isoformat()} for a in entries]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ApprovalError(f"cannot write the approvals file {path}: {exc.strerror}") from exc


def _entry(raw: Any) -> Approval | None:
    if not isinstance(raw, dict):
        return None
    try:
        until = datetime.fromisoformat(str(raw["until"]))
        return Approval(str(raw["ecosystem"]), str(raw["name"]),
                        until if until.tzinfo else until.replace(tzinfo=UTC),
                        str(raw.get("reason", "")), str(raw.get("by", "")))
    except (KeyError, ValueError):
        return None


def load(path: Path) -> list[Approval]:
    """Every approval recorded in ``path`` (none when it does not exist).

    Raises:
        ApprovalError: the file cannot be read or is not an approvals file.
    """
    module = _policy_module()
    if module is not None:
        return [Approval(str(a.ecosystem), a.name, a.until, a.reason, a.by)
                for a in module.load(path)]
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ApprovalError(f"cannot read the approvals file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApprovalError(f"{path} is not an approvals file: {exc}") from exc
    raw = data.get("approvals") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ApprovalError(f"{path} is not an approvals file (no 'approvals' list)")
    return [a for a in map(_entry, raw) if a is not None]
