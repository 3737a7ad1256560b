"""Known malicious and vulnerable versions, decided from the OSV database.

Owns the ``osv`` rule: a malware record always refuses; a vulnerability refuses
at or above ``min_severity`` or when its id (or an alias) is in ``block_ids``;
ids in ``ignore_ids`` never refuse (an accepted risk).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Verdict
from stockade.policy.osv import SEVERITIES, OsvDatabase, OsvRecord
from stockade.policy.rules.base import finding, human


@dataclass
class OsvRule:
    """The ``osv`` rule."""

    database: Callable[[], OsvDatabase]  # read at each decision: imports replace it
    min_severity: str | None = "critical"
    block_ids: Collection[str] = ()
    ignore_ids: Collection[str] = ()
    mode: Mode = Mode.ENFORCE
    name: str = "osv"
    # Data older than max_age (by its newest record), or none at all, is stale
    # intel: what a version it does not refuse gets then (intel.on_stale).
    max_age: timedelta | None = None
    on_stale: Decision = Decision.ALLOW
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def _refuses(self, record: OsvRecord) -> bool:
        ids = {record.id, *record.aliases}
        if ids & set(self.ignore_ids):
            return False
        if record.malicious or ids & set(self.block_ids):
            return True
        if self.min_severity is None or record.severity is None:
            return False
        return SEVERITIES.index(record.severity) >= SEVERITIES.index(self.min_severity)

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        db = self.database()
        if ref.version is None:
            records = db.malicious_names(ref.ecosystem, ref.name)
        else:
            records = db.affecting(ref.ecosystem, ref.name, ref.version)
        for record in sorted(records, key=lambda r: not r.malicious):
            if self._refuses(record):
                what = "is known malicious" if record.malicious else (
                    f"has a {record.severity or 'listed'} vulnerability")
                summary = f": {record.summary}" if record.summary else ""
                return finding(self.name, self.mode, Decision.BLOCK,
                               f"{ref.display()} {what} ({record.id}{summary})")
        return self._stale(ref, db)

    def _stale(self, ref: PackageRef, db: OsvDatabase) -> Verdict | None:
        if self.max_age is None or self.on_stale is Decision.ALLOW or ref.version is None:
            return None
        if db.newest is not None and self.now() - db.newest <= self.max_age:
            return None
        age = "no OSV data is loaded" if db.newest is None else \
            f"the OSV data is {human(self.now() - db.newest)} old"
        return finding(self.name, self.mode, self.on_stale,
                       f"{ref.display()} cannot be checked for known vulnerabilities: {age} "
                       f"(intel.osv_max_age {human(self.max_age)})")
