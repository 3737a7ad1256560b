"""What a project's facts make of a look-alike name: cleared, held, refused or recorded.

Owns the tiered decision of the typosquat rule once a look-up has matched a name
(strongly: today's detector; loosely: ``loose``): the settings of each tier
(``rules.typosquat.loose`` and ``strong``), when a project counts as young, a
project that copies its target's summary or points at its target's repository
(starjacking), and the sentences a hold and a record say. Pure: ``now`` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from stockade.policy.model import Decision, Ecosystem, ProjectFacts
from stockade.policy.names import split_npm
from stockade.policy.rules.base import human
from stockade.policy.typosquat.compare import maven_owner
from stockade.policy.typosquat.forms import skeleton
from stockade.policy.typosquat.summaries import fingerprint

# Strong matches of shapes that refused lesser-known real names about as often as they
# caught squats (``bench.typosquat_facts``): two popular names joined
# (``django-pydantic``), an affix changed (``python-athena`` for ``pyathena``), and a
# plural of a name below the PLURAL_STRONG_RANK most installed (``polylines``). They
# go to the loose tier: held while young, allowed and recorded once old.
LOOSE_TECHNIQUES = ("joins ", "changed affix")
PLURAL_STRONG_RANK = 1_000
# npm's strong matches of the shapes that refused ten or more lesser-known real names
# for each labelled squat they caught (three samples of 20,000, ``bench.typosquat_facts``
# ``--seed`` 7, 23 and 99): a separator changed (``code-mirror``), a scope dropped
# (``jest-reporters`` for ``@jest/reporters``), an edit that is no typist's slip (one
# letter changed, two edits, a confusable letter), a letter dropped (``react-movable``),
# a version digit dropped and the words ``cli``, ``lib``, ``dev`` and ``sdk`` added
# (``next-cli``). An npm document always carries its project's age, so these are held
# while young and allowed and recorded once old; PyPI keeps them strong.
NPM_LOOSE_TECHNIQUES = frozenset({
    "separator variant", "scope confusion", "one edit", "2 edits", "confusable characters",
    "dropped letter", "dropped version digit", "added affix 'cli'", "added affix 'lib'",
    "added affix 'dev'", "added affix 'sdk'"})


def borderline(ecosystem: Ecosystem, technique: str, rank: int | None) -> bool:
    """True when a strong match of ``technique`` against the name ranked ``rank`` is
    decided in the loose tier."""
    if technique.startswith(LOOSE_TECHNIQUES):
        return True
    if ecosystem is Ecosystem.NPM and technique in NPM_LOOSE_TECHNIQUES:
        return True
    return technique == "plural" and (rank is None or rank >= PLURAL_STRONG_RANK)


@dataclass(frozen=True, slots=True)
class Tiers:
    """The settings of both tiers (``on_missing``: where the project's age is unknown)."""

    young: timedelta = timedelta(days=30)
    max_releases: int = 3
    loose_on_missing: Decision = Decision.ALLOW
    strong_on_missing: Decision = Decision.BLOCK


class Outcome(NamedTuple):
    """What the facts make of a look-alike: a decision, the sentence's tail, a lift date
    (a named tuple: made at each look-alike's first sight, and a frozen dataclass's
    fields are set one call each)."""

    decision: Decision
    why: str
    until: datetime | None = None


def same_owner(ecosystem: Ecosystem, name: str, target: str) -> bool:
    """True when ``name`` is published by its target's owner, who may name projects
    alike: the same verified Maven namespace (``org.apache.commons3`` and
    ``org.apache.commons``), the same npm scope."""
    if ecosystem is Ecosystem.MAVEN:
        return maven_owner(name) == maven_owner(target)
    if ecosystem is Ecosystem.NPM:
        scope, _ = split_npm(name.lower())
        return scope is not None and scope == split_npm(target.lower())[0]
    return False


def releases(count: int | None) -> str:
    if count is None:
        return "releases unknown"
    return f"{count} release{'s' if count != 1 else ''}"


def newness(project: ProjectFacts, now: datetime) -> str:
    """``first release 2 days ago, 1 release``."""
    assert project.first_release is not None
    return f"first release {human(now - project.first_release)} ago, " \
           f"{releases(project.releases)}"


def young(project: ProjectFacts, now: datetime, tiers: Tiers) -> bool | None:
    """True: first release within ``young`` and few releases; None: age unknown."""
    if project.first_release is None:
        return None
    few = project.releases is None or project.releases <= tiers.max_releases
    return few and now - project.first_release < tiers.young


_DAY = timedelta(days=1)
_ALWAYS = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def unchanged(project: ProjectFacts, now: datetime,
              tiers: Tiers) -> tuple[datetime, datetime] | None:
    """The span ``[from, until)`` of times around ``now`` over which what ``loose`` makes
    of ``project`` stays the same (whether it is young, and its age in whole days as a
    sentence says it); None within a day of its first release, where the sentence
    counts hours and minutes."""
    first = project.first_release
    if first is None:
        return _ALWAYS
    age = now - first
    if age < _DAY:
        return None
    days = age.days  # whole days (a timedelta's days are its floor)
    start = first + _DAY * days
    end = start + _DAY
    turns = first + tiers.young  # where it stops being young
    if now < turns:
        end = min(end, turns)
    else:
        start = max(start, turns)
    return start, end


def _repo_parts(url: str) -> tuple[str, str, str] | None:
    """(host, owner, repository) of a repository URL (``git+https://...git`` too)."""
    text = url.strip().removeprefix("git+")
    if text.startswith("git@") and ":" in text:
        host, _, path = text[4:].partition(":")
    else:
        try:
            parts = urlsplit(text if "://" in text else f"https://{text}")
        except ValueError:
            return None
        host, path = parts.hostname or "", parts.path
    bits = [b for b in path.split("/") if b]
    if len(bits) < 2 or not host:
        return None
    return host.lower(), bits[0].lower(), bits[1].lower().removesuffix(".git")


def starjacked(ecosystem: Ecosystem, project: ProjectFacts, target: str) -> str | None:
    """The repository, where ``project`` points at one named after its target (the
    target's own, by its name) under an owner the project does not have."""
    if not project.repository:
        return None
    parts = _repo_parts(project.repository)
    if parts is None:
        return None
    _, owner, repo = parts
    bare = target.rpartition("/")[2].rpartition(":")[2]
    if skeleton(ecosystem, repo) != skeleton(ecosystem, bare):
        return None
    if owner in {o.lower() for o in project.owners}:
        return None  # the owner's own fork or mirror of it
    return f"{owner}/{repo}"


def copies_summary(project: ProjectFacts, target_print: int) -> bool:
    """True when the project's summary has the same words as its target's."""
    return bool(target_print) and fingerprint(project.summary) == target_print


def loose(ecosystem: Ecosystem, project: ProjectFacts, target: str, target_print: int,
          now: datetime, tiers: Tiers) -> Outcome:
    """A loose look-alike, on its project's facts."""
    if (repo := starjacked(ecosystem, project, target)) is not None:
        return Outcome(Decision.BLOCK, f"points at its repository ({repo}) under another "
                                       "owner (starjacking)")
    if copies_summary(project, target_print):
        return Outcome(Decision.HOLD, "copies its summary; held unless approved")
    is_young = young(project, now, tiers)
    if is_young is None:
        return Outcome(tiers.loose_on_missing, "its age is unknown" + (
            "; held unless approved" if tiers.loose_on_missing is Decision.HOLD else ""))
    assert project.first_release is not None
    if is_young:
        until = project.first_release + tiers.young
        return Outcome(Decision.HOLD, f"is new ({newness(project, now)}); held until "
                                      f"{until.date().isoformat()} unless approved", until)
    return Outcome(Decision.WARN, f"allowed ({newness(project, now)})")

