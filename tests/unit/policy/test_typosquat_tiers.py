"""The typosquat rule's tiers: a look-alike's facts clear it, hold it or refuse it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.policy.approvals import approve
from stockade.policy.engine import Engine
from stockade.policy.file import PolicyError, parse_policy
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, ProjectFacts
from stockade.policy.rules.base import human
from stockade.policy.rules.typosquat import TyposquatRule
from stockade.policy.typosquat.summaries import fingerprint, shipped
from stockade.policy.typosquat.tiers import Tiers, newness, unchanged, young

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
PYPI, NPM = Ecosystem.PYPI, Ecosystem.NPM
YOUNG = ProjectFacts(first_release=NOW - timedelta(days=2), releases=1)
OLD = ProjectFacts(first_release=NOW - timedelta(days=900), releases=40)
UNKNOWN = ProjectFacts()


def rule(**kwargs: object) -> TyposquatRule:
    return TyposquatRule(now=lambda: NOW, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def default() -> TyposquatRule:
    return rule()


def decide(r: TyposquatRule, eco: Ecosystem, name: str, project: ProjectFacts | None):
    return r.evaluate(PackageRef(eco, name), Facts(upstream="public", project=project))


def test_a_strong_match_is_refused_whatever_the_facts_and_says_what_was_meant(
        default: TyposquatRule) -> None:
    for project in (None, YOUNG, OLD, UNKNOWN):
        verdict = decide(default, PYPI, "reqeusts", project)
        assert verdict is not None and verdict.decision is Decision.BLOCK
        assert verdict.reason.endswith('did you mean "requests"?')
        assert verdict.target == "requests"


def test_a_young_loose_look_alike_is_held_until_it_is_old_enough(
        default: TyposquatRule) -> None:
    verdict = decide(default, PYPI, "flasksuperthing", YOUNG)
    assert verdict is not None and verdict.decision is Decision.HOLD and verdict.blocks
    assert verdict.until == YOUNG.first_release + timedelta(days=30)  # type: ignore[operator]
    assert verdict.refusal_phrase() == (
        'Blocked by stockade: "flasksuperthing" resembles "flask" and is new (first '
        "release 2 days ago, 1 release); held until 2026-12-31 unless approved "
        "(rule typosquat)")
    # a month later: allowed, and recorded as a look-alike (here one that the quick
    # search finds at any age; contained names are looked for only in young projects)
    later = rule()
    assert decide(later, PYPI, "flask-cors-2", YOUNG).decision is Decision.HOLD  # type: ignore[union-attr]
    later.now = lambda: NOW + timedelta(days=31)
    lifted = decide(later, PYPI, "flask-cors-2", YOUNG)
    assert lifted is not None and lifted.decision is Decision.WARN and not lifted.blocks
    assert decide(later, PYPI, "flasksuperthing", YOUNG) is None


@pytest.mark.parametrize(("eco", "name", "target"), [
    (PYPI, "sqlalchemy-utils2", "sqlalchemy-utils"),  # a version suffix
    (PYPI, "numpyhelperz", "numpy"),        # contained, run into an affix
    (NPM, "expresso-router", "expo-router"),  # near in spelling
    (NPM, "nodeffmpeg", "ffmpeg"),          # run into an affix, beyond the most installed
    (NPM, "@tyeps/nodes", "@types/node"),   # a misspelled scope
    (PYPI, "matlibplot", "matplotlib"),     # the same letters reordered
    (NPM, "puppeteer-extra-stealth", "puppeteer-extra-plugin-stealth"),  # a word left out
    (PYPI, "tlsclient-api", "tls-client"),  # a long name with a short affix, any rank
    (NPM, "umbrellaks", "umbrellajs"),      # a neighbouring key, beyond the one-edit rank
    (PYPI, "requestpanda", "requests"),     # two popular names run together, a plural dropped
    (NPM, "wb3cor", "web3-core"),           # letters dropped from a longer name
    (NPM, "ether-multcal", "ethers-multicall"),  # a long name at any rank, its ends kept
    (PYPI, "fairsequence", "fairseq"),      # run into a short affix, among the 20,000
    (PYPI, "smb", "pysmb"),                 # its marker dropped
    (PYPI, "liblxml3", "lxml"),             # a marker and a version added
    (NPM, "smb", "smb2"),                   # its version digit dropped, beyond the 20,000
])
def test_loose_likenesses_hold_the_young(default: TyposquatRule, eco: Ecosystem, name: str,
                                         target: str) -> None:
    verdict = decide(default, eco, name, YOUNG)
    assert verdict is not None, name
    assert verdict.decision in (Decision.HOLD, Decision.BLOCK), verdict
    if verdict.decision is Decision.HOLD:
        assert verdict.target == target, verdict


@pytest.mark.parametrize(("eco", "name"), [
    (NPM, "wb3cor"), (NPM, "ether-multcal"), (PYPI, "fairsequence"), (PYPI, "smb"),
    (PYPI, "liblxml3"), (NPM, "smb")])
def test_the_deep_shapes_never_stop_an_old_project(default: TyposquatRule, eco: Ecosystem,
                                                  name: str) -> None:
    """The deep likenesses are looked for only in young projects: an old one, or one of
    unknown age, passes whatever its name resembles."""
    assert decide(default, eco, name, YOUNG).decision is Decision.HOLD  # type: ignore[union-attr]
    for project in (OLD, UNKNOWN, None):
        verdict = decide(default, eco, name, project)
        assert verdict is None or not verdict.blocks, (name, project, verdict)


@pytest.mark.parametrize(("eco", "name"), [
    (PYPI, "fairseq-tools"),   # the plugin form: whole words beside another
    (PYPI, "sm"),              # too short to drop a marker from
    (NPM, "wbcor"),            # under six letters: too short for the ratio row
    (NPM, "@evil/ether-multcal"),  # a scoped name: left out of the long names' row
])
def test_near_misses_of_the_new_shapes_pass_young(default: TyposquatRule, eco: Ecosystem,
                                                  name: str) -> None:
    verdict = decide(default, eco, name, YOUNG)
    assert verdict is None or not verdict.blocks, verdict


def test_an_old_look_alike_with_many_releases_is_allowed_and_recorded(
        default: TyposquatRule) -> None:
    verdict = decide(default, PYPI, "flask-cors-2", OLD)
    assert verdict is not None and verdict.decision is Decision.WARN
    assert verdict.reason == ('"flask-cors-2" resembles "flask-cors" (version suffix): '
                              "allowed (first release 900 days ago, 40 releases)")


def test_young_with_many_releases_is_not_held(default: TyposquatRule) -> None:
    busy = ProjectFacts(first_release=NOW - timedelta(days=2), releases=4)
    verdict = decide(default, PYPI, "flask-cors-2", busy)
    assert verdict is not None and verdict.decision is Decision.WARN


def test_names_alone_decide_as_before(default: TyposquatRule) -> None:
    # no facts: the loose tier is not asked (a name gate, or check with bare names)
    assert decide(default, PYPI, "flasksuperthing", None) is None
    assert decide(default, PYPI, "flask", YOUNG) is None  # a protected name itself
    assert decide(default, PYPI, "zqxjkv-unrelated", YOUNG) is None


@pytest.mark.parametrize(("setting", "expected"), [
    (Decision.ALLOW, Decision.WARN), (Decision.HOLD, Decision.HOLD),
    (Decision.BLOCK, Decision.BLOCK)])
def test_missing_age_in_the_loose_tier(setting: Decision, expected: Decision) -> None:
    verdict = decide(rule(tiers=Tiers(loose_on_missing=setting)), PYPI, "flask-cors-2",
                     UNKNOWN)
    assert verdict is not None and verdict.decision is expected
    assert "its age is unknown" in verdict.reason


def test_missing_age_in_the_strong_tier() -> None:
    verdict = decide(rule(tiers=Tiers(strong_on_missing=Decision.ALLOW)), PYPI, "reqeusts",
                     UNKNOWN)
    assert verdict is not None and verdict.decision is Decision.WARN
    held = decide(rule(tiers=Tiers(strong_on_missing=Decision.HOLD)), PYPI, "reqeusts",
                  UNKNOWN)
    assert held is not None and held.decision is Decision.HOLD
    # known age: refused as always
    known = decide(rule(tiers=Tiers(strong_on_missing=Decision.ALLOW)), PYPI, "reqeusts", OLD)
    assert known is not None and known.decision is Decision.BLOCK


def test_starjacking_is_refused_at_any_age(default: TyposquatRule) -> None:
    jacked = ProjectFacts(first_release=OLD.first_release, releases=40, owners=("mallory",),
                          repository="git+https://github.com/pallets/flask-cors.git")
    verdict = decide(default, PYPI, "flask-cors-2", jacked)
    assert verdict is not None and verdict.decision is Decision.BLOCK
    assert "points at its repository (pallets/flask-cors)" in verdict.reason
    own = ProjectFacts(first_release=OLD.first_release, releases=40, owners=("mallory",),
                       repository="https://github.com/mallory/flask-cors")
    mine = decide(default, PYPI, "flask-cors-2", own)
    assert mine is not None and mine.decision is Decision.WARN  # the owner's own fork


def test_copying_the_targets_summary_is_held(default: TyposquatRule) -> None:
    summary = "A simple framework for building complex web applications."
    assert shipped(PYPI)["flask"] == fingerprint(summary)  # the shipped data has it
    copy = ProjectFacts(first_release=OLD.first_release, releases=40,
                        summary="a simple framework for building COMPLEX web applications")
    verdict = decide(default, PYPI, "flask3", copy)
    assert verdict is not None and verdict.decision is Decision.HOLD
    assert verdict.reason.endswith("copies its summary; held unless approved")
    assert verdict.until is None
    own = ProjectFacts(first_release=OLD.first_release, releases=40, summary="Something else")
    other = decide(default, PYPI, "flask3", own)
    assert other is not None and other.decision is Decision.WARN


def test_an_approval_lets_a_hold_and_a_refusal_through(tmp_path: Path) -> None:
    path = tmp_path / "approvals.yaml"
    approve(path, PYPI, "FlaskSuperthing", until="2026-12-10", now=NOW)
    approve(path, PYPI, "reqeusts", until="2026-12-10", now=NOW)
    policy = parse_policy("rules: {typosquat: {approvals: approvals.yaml}}",
                          base_dir=tmp_path, now=lambda: NOW)
    (typosquat,) = [r for r in policy.rules if isinstance(r, TyposquatRule)]
    assert decide(typosquat, PYPI, "flasksuperthing", YOUNG) is None
    assert decide(typosquat, PYPI, "reqeusts", None) is None
    assert policy.approvals == path
    typosquat.now = lambda: NOW + timedelta(days=8)  # the approval has ended
    held = decide(typosquat, PYPI, "flasksuperthing", YOUNG)
    assert held is not None and held.decision is Decision.HOLD


def test_policy_keys(tmp_path: Path) -> None:
    policy = parse_policy(
        "rules: {typosquat: {loose: {young: 10d, max_releases: 0, on_missing: hold},"
        " strong: {on_missing: allow}}}", base_dir=tmp_path, now=lambda: NOW)
    (typosquat,) = [r for r in policy.rules if isinstance(r, TyposquatRule)]
    assert typosquat.tiers == Tiers(timedelta(days=10), 0, Decision.HOLD, Decision.ALLOW)
    with pytest.raises(PolicyError, match=r"rules\.typosquat\.loose\.on_missing"):
        parse_policy("rules: {typosquat: {loose: {on_missing: maybe}}}", base_dir=tmp_path)
    (tmp_path / "bad.yaml").write_text("approvals: [{ecosystem: pypi}]")
    with pytest.raises(PolicyError, match=r"rules.typosquat.approvals: .*approvals\.0\.name"):
        parse_policy("rules: {typosquat: {approvals: bad.yaml}}", base_dir=tmp_path)


def test_the_engine_puts_a_hold_above_a_warning_and_below_a_refusal(
        default: TyposquatRule) -> None:
    engine = Engine([default], revision="r")
    ref = PackageRef(PYPI, "flask-cors-2")
    assert engine.decide(ref, Facts(project=YOUNG)).decision is Decision.HOLD
    assert engine.decide(ref, Facts(project=OLD)).decision is Decision.WARN
    assert engine.decide(ref, Facts()).decision is Decision.ALLOW


@pytest.mark.parametrize(("eco", "name"), [
    (PYPI, "flask-superthing"), (NPM, "react-guitars"), (NPM, "express-queryguard")])
def test_a_popular_name_as_whole_words_beside_others_is_not_held(
        default: TyposquatRule, eco: Ecosystem, name: str) -> None:
    # the plugin form: lesser-known real projects are named so (flask-*, react-*); PyPI
    # still holds it for names of six letters or more of the 1,000 most installed
    assert decide(default, eco, name, YOUNG) is None
    assert decide(default, PYPI, "django-guitars", YOUNG) is not None


@pytest.mark.parametrize(("name", "target"), [
    ("django-pydantic", "pydantic"),       # two popular names joined
    ("python-athena", "pyathena"),         # an affix changed
    ("polylines", "polyline"),             # a plural of a name below the top 1,000
])
def test_borderline_strong_matches_are_decided_in_the_loose_tier(
        default: TyposquatRule, name: str, target: str) -> None:
    held = decide(default, PYPI, name, YOUNG)
    assert held is not None and held.decision is Decision.HOLD and held.target == target
    assert held.until is not None
    old = decide(default, PYPI, name, OLD)
    assert old is not None and old.decision is Decision.WARN and not old.blocks
    unknown = decide(default, PYPI, name, UNKNOWN)  # age unknown: the loose tier's on_missing
    assert unknown is not None and unknown.decision is Decision.WARN and not unknown.blocks
    alone = decide(default, PYPI, name, None)  # no facts at all: the name gate as before
    assert alone is not None and alone.decision is Decision.BLOCK
    assert alone.reason.endswith(f'did you mean "{target}"?')
    # the most installed keep their refusal on the name alone
    strong = decide(default, PYPI, "torchvisions", OLD)
    assert strong is not None and strong.decision is Decision.BLOCK


@pytest.mark.parametrize(("name", "target", "technique"), [
    ("code-mirror", "codemirror", "separator variant"),
    ("jest-reporters", "@jest/reporters", "scope confusion"),
    ("read-png", "read-pkg", "one edit"),
    ("npm-run-batch", "npm-run-path", "2 edits"),
    ("url-parser", "uri-parser", "confusable characters"),
    ("react-movable", "react-moveable", "dropped letter"),
    ("radix", "radix3", "dropped version digit"),
    ("next-cli", "next", "added affix 'cli'"),
    ("url-lib", "url", "added affix 'lib'"),
    ("react-router-dev", "react-router", "added affix 'dev'"),
    ("axios-sdk", "axios", "added affix 'sdk'"),
])
def test_npm_shapes_that_refuse_real_names_are_decided_in_the_loose_tier(
        default: TyposquatRule, name: str, target: str, technique: str) -> None:
    # an npm document always carries its project's age: young, held; old, allowed and
    # recorded; the name alone is refused as before
    held = decide(default, NPM, name, YOUNG)
    assert held is not None and held.decision is Decision.HOLD and held.target == target
    assert held.reason.startswith(f'"{name}" resembles "{target}" and is new (first release')
    assert held.until == YOUNG.first_release + timedelta(days=30)  # type: ignore[operator]
    old = decide(default, NPM, name, OLD)
    assert old is not None and old.decision is Decision.WARN and not old.blocks
    assert old.reason == f'"{name}" resembles "{target}" ({technique}): allowed (first ' \
                         "release 900 days ago, 40 releases)"
    alone = decide(default, NPM, name, None)
    assert alone is not None and alone.decision is Decision.BLOCK
    assert alone.reason.endswith(f'({technique}); did you mean "{target}"?')
    # the packument's name gate: every version is decided on its facts next
    gate = Facts(upstream="public", project_follows=True)
    assert default.evaluate(PackageRef(NPM, name), gate) is None
    strong = default.evaluate(PackageRef(NPM, "lodahs"), gate)  # a strong shape still refuses
    assert strong is not None and strong.decision is Decision.BLOCK


@pytest.mark.parametrize(("eco", "name", "target"), [
    (PYPI, "beautiful-soup4", "beautifulsoup4"),  # a separator variant: PyPI keeps it strong
    (PYPI, "request", "requests"),                # a dropped letter
    (NPM, "lodahs", "lodash"),                    # swapped letters: npm keeps it strong
    (NPM, "expresss", "express"),                 # a repeated letter
])
def test_the_other_strong_shapes_are_refused_at_any_age(
        default: TyposquatRule, eco: Ecosystem, name: str, target: str) -> None:
    old = decide(default, eco, name, OLD)
    assert old is not None and old.decision is Decision.BLOCK and old.target == target


def test_the_targets_own_namespace_or_scope_is_cleared(default: TyposquatRule) -> None:
    maven = Ecosystem.MAVEN
    held = decide(default, maven, "slf4j:slf4j-api", YOUNG)  # another owner's namespace
    assert held is not None and held.decision is Decision.HOLD
    assert held.target == "org.slf4j:slf4j-api"
    assert decide(default, maven, "org.slf4j:slf4j-api-2", YOUNG) is None  # its own
    assert decide(default, maven, "org.apache.commons3:commons-lang3", YOUNG) is None
    assert default.resembles(maven, "slf4j:slf4j-api")
    assert not default.resembles(maven, "org.slf4j:slf4j-api-2")  # no fetch for its facts


def test_a_kept_verdict_is_the_one_the_facts_and_the_hour_make() -> None:
    """The loose tier keeps a name's verdict for the next version of the same document:
    it must be what a rule that never kept anything decides, whatever the facts given
    next and however the clock moves (a day more in the sentence, the end of youth)."""
    clock = [NOW]
    kept = TyposquatRule(now=lambda: clock[0])
    young = ProjectFacts(first_release=NOW - timedelta(days=28, hours=23), releases=1)
    steps = [timedelta(0), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2),
             timedelta(days=1, hours=1), timedelta(days=1, hours=2), timedelta(days=40)]
    seen = set()
    for name in ("flasksuperthing", "flask-cors-2"):
        for step in steps:
            clock[0] = NOW + step
            for project in (young, OLD, young, UNKNOWN, young):
                fresh = TyposquatRule(now=lambda: clock[0])
                got = decide(kept, PYPI, name, project)
                assert got == decide(fresh, PYPI, name, project), (name, step, project)
                seen.add(got.reason if got is not None else None)
    # the clock moved the sentence on: 28 days, 29, 30 (then allowed, no longer young)
    assert any("first release 28 days ago" in (r or "") for r in seen)
    assert any("first release 29 days ago" in (r or "") for r in seen)
    assert any("first release 30 days ago" in (r or "") for r in seen)


def test_a_policy_reload_or_a_cleared_cache_forgets_the_kept_verdicts() -> None:
    strict = rule()
    assert decide(strict, PYPI, "flasksuperthing", YOUNG).decision is Decision.HOLD  # type: ignore[union-attr]
    reloaded = rule(tiers=Tiers(young=timedelta(days=1)))  # a new policy: a new rule
    verdict = decide(reloaded, PYPI, "flasksuperthing", YOUNG)
    assert verdict is None or verdict.decision is not Decision.HOLD
    strict.tiers = Tiers(young=timedelta(days=1))
    strict.clear_cache()
    assert decide(strict, PYPI, "flasksuperthing", YOUNG) == verdict


@settings(max_examples=300, deadline=None)
@given(age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000)),
       releases=st.sampled_from([None, 1, 3, 4, 40]))
def test_the_span_a_verdict_is_kept_for_is_the_widest_it_stays_the_same(
        age: timedelta, releases: int | None) -> None:
    """``unchanged``: over its span the loose tier's sentence and the project's youth
    are those of ``now``; a microsecond outside it, one of them differs."""
    project = ProjectFacts(first_release=NOW - age, releases=releases)
    tiers = Tiers()
    span = unchanged(project, NOW, tiers)
    if age < timedelta(days=1):
        assert span is None  # the sentence counts hours and minutes there
        return
    assert span is not None
    start, end = span
    assert start <= NOW < end

    def said(at: datetime) -> tuple[str, bool | None]:
        return newness(project, at), young(project, at, tiers)

    tick = timedelta(microseconds=1)
    assert said(start) == said(NOW) == said(end - tick)
    assert said(start - tick) != said(NOW)
    assert said(end) != said(NOW)


def test_how_long_is_said_in_whole_units_and_never_below_nothing() -> None:
    assert human(timedelta(days=2, hours=23)) == "2 days"
    assert human(timedelta(days=1)) == "1 day"
    assert human(timedelta(hours=5, minutes=59, seconds=59, microseconds=999999)) == "5 hours"
    assert human(timedelta(minutes=1)) == "1 minute"
    assert human(timedelta(seconds=59, microseconds=999999)) == "59 seconds"
    assert human(timedelta(microseconds=-1)) == "0 seconds"
    assert human(timedelta(days=-3)) == "0 seconds"
