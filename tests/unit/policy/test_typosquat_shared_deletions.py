"""The strong index's deletions, shared with the loose tier's one edit: the same
neighbours in one table, and the same answers read from it."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

import pytest

import stockade.policy.rules.typosquat as typosquat_rule
import stockade.policy.typosquat.loose as loose_module
from stockade.policy.model import Ecosystem, Facts, PackageRef, ProjectFacts
from stockade.policy.rules.typosquat import TyposquatRule, popular
from stockade.policy.typosquat import NameIndex
from stockade.policy.typosquat.loose import LooseIndex
from tests.unit.policy.test_typosquat_loose_packed import _probes

NOW = datetime(2026, 11, 15, tzinfo=UTC)


def _held(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


@pytest.mark.parametrize("eco", [Ecosystem.PYPI, Ecosystem.NPM])
def test_the_edit_deletions_hold_the_loose_one_edit_neighbours(eco: Ecosystem) -> None:
    # past the edits' reach (20,000), with short names beyond SHORT_EDIT_RANK in it
    names = popular(eco)[:24_000]
    strong = NameIndex(eco, names).edits
    loose = LooseIndex(eco, names)
    one = dict(loose._one.items())
    assert one and set(one) == set(strong._deletes)
    assert all(_held(strong._deletes[key]) == held for key, held in one.items())
    rng = random.Random(5)  # noqa: S311 - test data, not secrets
    shared = copy.copy(loose)
    assert shared.share_one_edit(strong)
    for probe in _probes(names, rng, 400):
        skel = probe.lower()
        strong.neighbours(skel[::-1])  # another name's answer kept: asked anew
        assert shared._one_edit(skel) == loose._one_edit(skel), probe
        strong.neighbours(skel)  # this name's answer kept: read as it is
        assert shared._one_edit(skel) == loose._one_edit(skel), probe


def test_maven_keeps_its_own_one_edit_table() -> None:
    names = ("org.apache.commons:commons-lang3", "com.google.guava:guava")
    assert not LooseIndex(Ecosystem.MAVEN, names).share_one_edit(
        NameIndex(Ecosystem.MAVEN, names).edits)


@pytest.mark.parametrize("protected", [{}, {Ecosystem.PYPI: ["acme-requests-tools"],
                                             Ecosystem.NPM: ["@acme/lodash-kit"]}])
def test_the_rule_shares_them_and_decides_alike(
        protected: dict[Ecosystem, list[str]]) -> None:
    rule = TyposquatRule(protected=protected, now=lambda: NOW)
    old = Facts(upstream="public", project=ProjectFacts(NOW - timedelta(days=730), 40))
    rng = random.Random(9)  # noqa: S311 - test data, not secrets
    for eco in (Ecosystem.PYPI, Ecosystem.NPM):
        *_, whole = rule.loose_index(eco)
        assert whole._shared is not None
        # the same rule reading the loose tier's own table: its answers are the reference
        apart = TyposquatRule(protected=protected, now=lambda: NOW)
        own = copy.copy(whole)
        own._shared = None
        apart._loose_indexes[eco] = (*apart.loose_index(eco)[:-1], own)
        apart._sharing.clear()  # nor the strong tier's skeleton: the loose search's own
        found = 0
        for probe in _probes(popular(eco), rng, 600):
            ref = PackageRef(eco, probe)
            want = apart.evaluate(ref, old)
            assert rule.evaluate(ref, old) == want, probe
            found += want is not None and "resembles" in want.reason
        assert found > 20  # the probes do reach the loose tier's one edit


@pytest.mark.parametrize(("eco", "unlike", "suffixed"), [
    (Ecosystem.PYPI, "zqxv-unheard-of-thing", "flask-sqlalchemy-3"),
    (Ecosystem.NPM, "zqxv-unheard-of-thing", "lodash-4")])
def test_a_first_sight_with_facts_makes_the_name_s_forms_once(
        eco: Ecosystem, unlike: str, suffixed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rule = TyposquatRule(now=lambda: NOW)
    rule.prepare()
    old = Facts(upstream="public", project=ProjectFacts(NOW - timedelta(days=730), 40))
    made = {"normalize": 0, "skeleton": 0}

    def counted(module: object, name: str) -> None:
        real = getattr(module, name)

        def count(*args: object) -> object:
            made[name] += 1
            return real(*args)
        monkeypatch.setattr(module, name, count)
    counted(typosquat_rule, "normalize")
    counted(loose_module, "skeleton")
    # the strong tier finds nothing for either; the quick loose search finds the second
    for name, resembles in ((unlike, False), (suffixed, True)):
        made.update(normalize=0, skeleton=0)
        verdict = rule.evaluate(PackageRef(eco, name), old)
        assert (verdict is not None and "resembles" in verdict.reason) is resembles, name
        # the strong tier's normalisation only, and no skeleton of the name again (the
        # version suffix's base is one: the part before the version)
        assert made == {"normalize": 1, "skeleton": int(resembles)}, name
        made.update(normalize=0, skeleton=0)
        assert rule.evaluate(PackageRef(eco, name), old) == verdict  # asked again
        assert made["skeleton"] == 0, name
