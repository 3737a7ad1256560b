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
      osv: {min_severity: moderate, block_ids: [GHSA-xxxx]}  # the global OSV data
      typosquat: {loose: {young: 365d, max_releases: 10, on_missing: hold},
                  strong: {on_missing: refuse}}
```

A team's ``osv`` section decides on the data the global ``rules.osv`` section
reads (it needs that section); its ``min_severity`` may only be lower (stricter)
than the global one. A team's ``typosquat`` section gives the loose and strong
tiers its own settings, each unset one taken from the global section; a set one
may only be stricter: a longer ``young``, more ``max_releases``, an
``on_missing`` of ``allow`` < ``hold`` < ``refuse`` at least the global one. A
looser value is an error naming the key, not silently ignored (it could not
loosen anything anyway: the global rule runs first).

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
from datetime import datetime, timedelta

from stockade.policy.model import Decision, Facts, Mode, PackageRef, Rule, Verdict
from stockade.policy.osv import SEVERITIES
from stockade.policy.rules.base import human
from stockade.policy.rules.lists import AllowlistOnly, ListEntry, ListsRule
from stockade.policy.typosquat.tiers import Tiers

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


# how strict a tier is where a project's age is unknown: recorded, held, refused
_ON_MISSING_ORDER = (Decision.ALLOW, Decision.WARN, Decision.HOLD, Decision.BLOCK)


def stricter_severity(base: str | None, team: str | None) -> str | None:
    """The ``min_severity`` a team's ``osv`` rule refuses at: the team's (unset: the
    global one).

    Raises:
        ValueError: the team's is higher than the global one (looser).
    """
    if team is None:
        return base
    if base is not None and SEVERITIES.index(team) > SEVERITIES.index(base):
        raise ValueError(f"min_severity: {team!r} is looser than the global {base!r}; "
                         "a team may only be stricter (lower)")
    return team


def _on_missing(key: str, base: Decision, team: Decision | None, check: bool) -> Decision:
    if team is None:
        return base
    if check and _ON_MISSING_ORDER.index(team) < _ON_MISSING_ORDER.index(base):
        raise ValueError(f"{key}: {_word(team)!r} is looser than the global "
                         f"{_word(base)!r}; a team may only be stricter")
    return team


def _word(decision: Decision) -> str:
    return "refuse" if decision is Decision.BLOCK else decision.value


def stricter_tiers(base: Tiers, *, young: timedelta | None, max_releases: int | None,
                   loose_on_missing: Decision | None,
                   strong_on_missing: Decision | None, check: bool = True) -> Tiers:
    """A team's typosquat tiers: its settings over the global ones (``base``), which
    it may not loosen (``check``; off where the global rule is off).

    Raises:
        ValueError: a setting looser than the global one, naming its key.
    """
    if check:
        _not_looser(base, young, max_releases)
    return Tiers(young=base.young if young is None else young,
                 max_releases=base.max_releases if max_releases is None else max_releases,
                 loose_on_missing=_on_missing("loose.on_missing", base.loose_on_missing,
                                              loose_on_missing, check),
                 strong_on_missing=_on_missing("strong.on_missing", base.strong_on_missing,
                                               strong_on_missing, check))


def _not_looser(base: Tiers, young: timedelta | None, max_releases: int | None) -> None:
    if young is not None and young < base.young:
        raise ValueError(f"loose.young: {human(young)} is shorter than the global "
                         f"{human(base.young)}; "
                         "a team may only be stricter (longer)")
    if max_releases is not None and max_releases < base.max_releases:
        raise ValueError(f"loose.max_releases: {max_releases} is fewer than the global "
                         f"{base.max_releases}; a team may only be stricter (more)")
