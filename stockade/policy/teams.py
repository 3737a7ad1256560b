"""Per-team policy: a team's own tags, lists and stricter rule settings.

Owns the ``teams`` section of the policy file and what a team's rules are. A
team's policy is the global policy plus its own rules: its engine runs every
global rule and then the team's, and keeps the most severe verdict, so a team
can only refuse more, never less (its ``allow`` entries cannot lift a global
deny, typosquat or cooldown refusal; they only count towards the team's own
``required_tags``).

```yaml
teams:
  payments:
    required_tags: [pci-reviewed]   # only names with an allow entry carrying these
    allow: [{ecosystem: pypi, name: requests, reason: reviewed}]  # count as tagged
    deny: [{ecosystem: npm, name: left-pad, reason: not for payments}]
    rules:
      cooldown: {min_age: 14d}      # on top of the global cooldown
      licenses: {deny: [GPL-3.0-only]}
      install_scripts: {npm: block}
      provenance: {require_for: ["npm:*"]}  # verified provenance required
```

A team's ``provenance`` section adds its requirements (``require_for``,
``identities``, ``downgrade``) to what the global section asks. Files are
verified where the global policy's ``provenance`` section looks at them (it
verifies signatures and attestations unless switched off); where it does not,
a team's requirement refuses what the upstream's metadata says has no
provenance, and cannot check the rest.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Rule, Verdict
from stockade.policy.rules.lists import AllowlistOnly, ListEntry, ListsRule

TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class TeamScoped:
    """A rule that applies for one team only: its refusals say which team's policy."""

    __slots__ = ("name", "rule", "team")

    def __init__(self, rule: Rule, team: str) -> None:
        self.rule = rule
        self.team = team
        self.name = rule.name

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        verdict = self.rule.evaluate(ref, facts)
        if verdict is None or verdict.decision is Decision.ALLOW:
            return verdict
        return dataclasses.replace(verdict, reason=f"{verdict.reason} (policy of team "
                                                   f"{self.team})")

    def clear_cache(self) -> None:
        clear = getattr(self.rule, "clear_cache", None)
        if callable(clear):
            clear()


def team_lists(team: str, *, required_tags: Sequence[str], allow: Sequence[ListEntry],
               deny: Sequence[ListEntry], global_allow: Sequence[ListEntry], mode: Mode,
               now: Callable[[], datetime]) -> Rule | None:
    """The team's ``lists`` rule: its deny entries, and, where it requires tags, only
    names with an allow entry carrying them (a global one, or the team's own, which
    count as carrying the team's tags). None when the team lists nothing."""
    tags = frozenset(required_tags)
    if not tags and not deny:
        return None
    own = [dataclasses.replace(e, tags=e.tags | tags) for e in allow]
    rule = ListsRule(allow=[*global_allow, *own], deny=list(deny),
                     allowlist_only=AllowlistOnly(enabled=bool(tags), required_tags=tags),
                     mode=mode, now=now)
    return TeamScoped(rule, team)


def check_team_name(name: str) -> None:
    """Raises ValueError for a team name the tokens file could not carry."""
    if not TEAM_NAME.match(name):
        raise ValueError(f"team name {name!r}: letters, digits and _.@- only")


def team_rules(teams: Mapping[str, Sequence[Rule]], team: str | None) -> Sequence[Rule]:
    """The rules a team adds to the global ones (none for an unknown team or none)."""
    return () if team is None else teams.get(team, ())
