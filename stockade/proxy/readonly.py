"""What a server over read-only storage does instead of writing.

Owns the decision sink used when the decision log cannot be written: each
record goes to the ``stockade.decisions`` logger as one JSON line (standard
error, where the operator's log collector reads), after one warning that the
log file is not being written. Records are not hash-chained there: the chain
belongs to the file, which a later writable start continues.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from stockade.policy.model import PackageRef, Verdict

logger = logging.getLogger(__name__)
decisions_logger = logging.getLogger("stockade.decisions")


class LoggedDecisions:
    """Decision records as log lines, for a decision log that cannot be written."""

    def __init__(self, path: Path, reason: str, *, revision: Callable[[], str],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._path = path
        self._reason = reason
        self._revision = revision
        self._clock = clock
        self._seq = 0

    async def open(self) -> None:
        """Say, once, where the records go instead."""
        logger.warning("the decision log %s cannot be written (%s): each decision is "
                       "logged on stockade.decisions instead", self._path, self._reason)

    async def close(self) -> None:
        """Nothing is held."""

    async def record(self, verdict: Verdict, ref: PackageRef, *, client: str,
                     request_id: str, versions: Sequence[str] = (), identity: str = "",
                     team: str | None = None) -> None:
        """Log one record with the fields the decision log would hold."""
        record = {
            "seq": self._seq, "time": self._clock().isoformat(timespec="milliseconds"),
            "ecosystem": ref.ecosystem.value, "name": ref.name, "version": ref.version,
            "filename": ref.filename, "decision": verdict.decision.value,
            "rule": verdict.rule, "reason": verdict.reason, "target": verdict.target,
            "audit": verdict.audit_only, "client": client, "request_id": request_id,
            "policy_revision": self._revision(),
        }
        if versions:
            record["versions"] = list(versions)
        if identity:
            record["identity"] = identity
        if team:
            record["team"] = team
        self._seq += 1
        decisions_logger.warning("decision %s", json.dumps(record, sort_keys=True))
