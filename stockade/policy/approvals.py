"""Approvals: time-limited exceptions to the typosquat rule, kept in a file the policy
includes (``rules.typosquat.approvals: approvals.yaml``).

Owns the file's format, reading it and adding to it: ``stockade approve`` and the
web page both call ``approve``; the policy reads it with ``load``. An approval lets
one name through the typosquat rule (a hold or a refusal) until its date; it names
who approved it and why, so the decision log can say so. Writing is atomic (a new
file renamed over the old one) under a lock, so two approvers never lose each
other's entries and a running server never reads half a file.

```yaml
approvals:
  - {ecosystem: pypi, name: pytest-playwrights, until: "2026-12-31T23:59:59+00:00",
     reason: "our own fork", by: alice, at: "2026-12-03T10:00:00+00:00"}
```
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from stockade.config.load import load_yaml
from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize, valid

DEFAULT_DAYS = 30  # how long an approval lasts when no date is given


class ApprovalError(ValueError):
    """An approvals file or an approval that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Approval:
    """One name let through the typosquat rule until ``until`` (UTC)."""

    ecosystem: Ecosystem
    name: str
    until: datetime
    reason: str = ""
    by: str = ""
    at: datetime | None = None  # when it was approved

    @property
    def key(self) -> tuple[Ecosystem, str]:
        """What it is looked up by: the ecosystem and the normalised name."""
        return self.ecosystem, normalize(self.ecosystem, self.name)

    def in_force(self, now: datetime) -> bool:
        return now <= self.until

    def describe(self) -> str:
        """``approved by alice until 2026-12-31: our own fork``."""
        who = f" by {self.by}" if self.by else ""
        why = f": {self.reason}" if self.reason else ""
        return f"approved{who} until {self.until.date().isoformat()}{why}"

    def as_dict(self) -> dict[str, str]:
        out = {"ecosystem": self.ecosystem.value, "name": self.name,
               "until": self.until.isoformat(), "reason": self.reason, "by": self.by}
        if self.at is not None:
            out["at"] = self.at.isoformat()
        return out


def end_of(value: date | datetime | str) -> datetime:
    """The moment an approval ``until`` a date or time ends, timezone-aware (UTC):
    a bare date lasts to the end of that day.

    Raises:
        ApprovalError: not a date or a time.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else \
                datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApprovalError(f"{value!r} is not a date (YYYY-MM-DD) or a time") from exc
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, date):  # a number, a list: YAML reads anything
        raise ApprovalError(f"{value!r} is not a date (YYYY-MM-DD) or a time")
    return datetime.combine(value, time(23, 59, 59), tzinfo=UTC)


def _parse(item: Any, where: str) -> Approval:
    if not isinstance(item, dict):
        raise ApprovalError(f"{where}: an approval is a mapping with ecosystem, name, until")
    unknown = set(item) - {"ecosystem", "name", "until", "reason", "by", "at"}
    if unknown:
        raise ApprovalError(f"{where}: unknown keys {sorted(unknown, key=str)}")
    try:
        ecosystem = Ecosystem(str(item.get("ecosystem", "")))
    except ValueError as exc:
        raise ApprovalError(f"{where}.ecosystem: {item.get('ecosystem')!r} is not one of "
                            f"{', '.join(e.value for e in Ecosystem)}") from exc
    name = item.get("name")
    if not isinstance(name, str) or not valid(ecosystem, name):
        raise ApprovalError(f"{where}.name: {name!r} is not a valid {ecosystem.value} name")
    if item.get("until") is None:
        raise ApprovalError(f"{where}.until: missing (an approval always ends)")
    try:
        until = end_of(item["until"])
        at = None if item.get("at") is None else end_of(item["at"])
    except ApprovalError as exc:
        raise ApprovalError(f"{where}: {exc}") from exc
    return Approval(ecosystem, name, until, str(item.get("reason") or ""),
                    str(item.get("by") or ""), at)


def parse(text: str, source: str = "approvals") -> list[Approval]:
    """The approvals in ``text`` (an empty document holds none).

    Raises:
        ApprovalError: not YAML, or an entry that is not an approval (named by index).
    """
    try:
        raw = load_yaml(text) if text.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ApprovalError(f"{source}: not valid YAML: {exc}") from exc
    if raw is None:
        return []
    if not isinstance(raw, dict) or not isinstance(raw.get("approvals", []), list) \
            or set(raw) - {"approvals"}:
        raise ApprovalError(f"{source}: expected a mapping with one key, approvals: [...]")
    return [_parse(item, f"{source}: approvals.{i}")
            for i, item in enumerate(raw.get("approvals") or [])]


def load(path: Path) -> list[Approval]:
    """The approvals in the file at ``path``; none where it does not exist yet.

    Raises:
        ApprovalError: the file cannot be read or holds something else.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ApprovalError(f"{path}: cannot read the approvals file: {exc}") from exc
    return parse(text, str(path))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (its ``.lock`` file)."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _dump(approvals: list[Approval]) -> str:
    body = yaml.safe_dump({"approvals": [a.as_dict() for a in approvals]},
                          sort_keys=False, allow_unicode=True, width=100)
    return "# Written by `stockade approve`: time-limited typosquat exceptions.\n" + body


def approve(path: Path, ecosystem: Ecosystem, name: str, *,
            until: date | datetime | str | None = None, reason: str = "", by: str = "",
            now: datetime | None = None) -> Approval:
    """Add an approval of ``name`` to the file at ``path`` (created if missing) and
    return it. An earlier approval of the same name is replaced; approvals that have
    ended are dropped. ``until`` defaults to ``DEFAULT_DAYS`` from now.

    Raises:
        ApprovalError: a bad name or date, a date already past, or a file that
            cannot be read or written.
    """
    now = now or datetime.now(UTC)
    if not valid(ecosystem, name):
        raise ApprovalError(f"{name!r} is not a valid {ecosystem.value} name")
    ends = end_of(until) if until is not None else now + timedelta(days=DEFAULT_DAYS)
    if ends < now:
        raise ApprovalError(f"{ends.date().isoformat()} has passed: an approval must end "
                            "in the future")
    approval = Approval(ecosystem, name, ends, reason.strip(), by.strip(), now)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        kept = [a for a in load(path) if a.key != approval.key and a.in_force(now)]
        kept.append(approval)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o644)  # read by the server, as the policy file is
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(_dump(kept))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ApprovalError(f"{path}: cannot write the approvals file: {exc}") from exc
    return approval


def in_force(approvals: list[Approval], now: datetime) -> dict[tuple[Ecosystem, str], Approval]:
    """The approvals still in force, by (ecosystem, normalised name)."""
    return {a.key: a for a in approvals if a.in_force(now)}
