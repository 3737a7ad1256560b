"""Release age: new versions wait before anyone installs them.

Owns the ``cooldown`` rule. The worms of 2025 were live on npm for hours; a
few days' wait lets the registries and the community catch them. A version's
age counts from the later of the upstream's publish date and the time
stockade first saw it (upstream dates can be wrong). A version with no date
is refused unless the rule says otherwise (fail closed). Exemptions: entries
(break-glass for one version), internal upstreams. ``cutoff`` refuses anything
published after a date: the day a worm is spreading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Verdict
from stockade.policy.rules.base import Entry, finding, human


@dataclass
class CooldownRule:
    """The ``cooldown`` rule (applies to versions, not names)."""

    min_age: timedelta | None = None
    cutoff: datetime | None = None
    allow_undated: bool = False
    exempt_internal: bool = True
    undated: Decision = Decision.BLOCK  # what a version without any date gets
    exempt: Sequence[Entry] = ()
    mode: Mode = Mode.ENFORCE
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    name: str = "cooldown"

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if ref.version is None:
            return None
        if self.exempt_internal and facts.internal:
            return None
        if any(e.matches(ref) for e in self.exempt):
            return None
        dates = [d for d in (facts.published_at, facts.first_seen_at) if d is not None]
        if not dates:
            if self.allow_undated or self.undated is Decision.ALLOW:
                return None
            return finding(self.name, self.mode, self.undated,
                           f"{ref.display()} has no publish date, and versions without one "
                           "are held back" if self.undated is Decision.BLOCK else
                           f"{ref.display()} has no publish date")
        published = max(_aware(d) for d in dates)
        if self.cutoff is not None and published > self.cutoff:
            return finding(self.name, self.mode, Decision.BLOCK,
                           f"{ref.display()} was published {published:%Y-%m-%d %H:%M} UTC, "
                           f"after the cut-off {self.cutoff:%Y-%m-%d %H:%M} UTC")
        if self.min_age is not None:
            age = self.now() - published
            if age < self.min_age:
                return finding(self.name, self.mode, Decision.BLOCK,
                               f"{ref.display()} was published {human(age)} ago; versions "
                               f"younger than {human(self.min_age)} are held back")
        return None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
