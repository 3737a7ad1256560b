"""The policy's own names over the shipped index: decided as the two built as one.

``NameIndex.over`` keeps the shipped lists' index built once and the policy's names
(protected and internal, ranked first) in a small index of their own; every name must
get the answer of ``NameIndex(shipped, first=policy)``, including where a policy name
holds the skeleton of a shipped one, is a shipped one, or competes with one.
"""

from __future__ import annotations

import functools
import random

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.rules.typosquat import TyposquatRule, popular
from stockade.policy.typosquat import NameIndex

E = Ecosystem
SHIPPED = {E.PYPI: 15_000, E.NPM: 25_000}  # past every rank limit an edit takes


@functools.cache
def _shipped(eco: Ecosystem) -> tuple[str, ...]:
    return popular(eco)[:SHIPPED[eco]]


@functools.cache
def _base(eco: Ecosystem) -> NameIndex:
    return NameIndex(eco, _shipped(eco))


def _mutations(rng: random.Random, name: str) -> set[str]:
    found = {name, name.upper(), name.replace("-", "_"), name + "s", name[:-1], "py" + name,
             name + "-js", name.replace("-", ""), name + "2", f"{name}-{name}"}
    for _ in range(10):
        i = rng.randrange(len(name))
        letter = rng.choice("abeilmnorstuy-1")
        found |= {name[:i] + letter + name[i:], name[:i] + name[i + 1:],
                  name[:i] + letter + name[i + 1:],
                  name[:i] + name[i + 1:i + 2] + name[i] + name[i + 2:]}
    return found


POLICIES = {
    E.PYPI: [
        # the same skeleton as a shipped name, a shipped name itself, a near one
        ["SETUPTOOLS", "click", "requestz", "acme-requests", "internal-tool"],
        ["Py_Yaml", "numpy", "nunpy2", "django-acme", "boto3-internal", "urllib"],
    ],
    E.NPM: [
        ["pup_peteer", "react", "expres", "@acme/lodash", "internal-tool", "P_LIMIT"],
        ["lodash", "webpack-dev-servers", "@babel/core", "chalk-acme", "momentt"],
    ],
}


@pytest.mark.parametrize(("eco", "policy"),
                         [(eco, p) for eco, ps in POLICIES.items() for p in ps])
def test_layered_index_decides_as_one_built_whole(eco: Ecosystem, policy: list[str]) -> None:
    whole = NameIndex(eco, _shipped(eco), first=policy)
    layered = NameIndex.over(_base(eco), policy)
    rng = random.Random(" ".join(policy))  # noqa: S311 (reproducible test names)
    shipped = _shipped(eco)
    near = [*policy, *shipped[:30], *(rng.choice(shipped) for _ in range(60))]
    queries = sorted(set().union(*(_mutations(rng, n) for n in near)))
    found = {q: layered.lookalike(q) for q in queries}
    differ = [(q, whole.lookalike(q), found[q]) for q in queries
              if whole.lookalike(q) != found[q] or (q in whole) != (q in layered)]
    assert not differ, differ[:10]
    # the checks reached matches of both layers, not only misses
    targets = {m.target for m in found.values() if m is not None}
    assert targets & set(layered.names) - set(_base(eco).names)
    assert len(targets) > 50


def test_a_name_near_a_policy_name_and_a_shipped_one_is_the_policy_ones() -> None:
    # One edit from both "requestz" (the policy's, ranked first) and "requests".
    layered = NameIndex.over(_base(E.PYPI), ["requestz"])
    match = layered.lookalike("requestx")
    assert match is not None and match.target == "requestz"
    assert _base(E.PYPI).lookalike("requestx").target == "requests"  # type: ignore[union-attr]


def test_a_policy_name_holding_a_shipped_skeleton_hides_its_slips() -> None:
    # "pup_peteer" holds puppeteer's skeleton: built whole, puppeteer is filed under
    # none of the slips that only a skeleton's holder takes, and its word slip goes.
    policy = ["pup_peteer"]
    whole = NameIndex(E.NPM, _shipped(E.NPM), first=policy)
    layered = NameIndex.over(_base(E.NPM), policy)
    for name in ("pupeteer-har", "puppeter", "puppeteer", "pupeteer", "puppeteer-extra"):
        assert layered.lookalike(name) == whole.lookalike(name), name
    assert _base(E.NPM).lookalike("pupeteer-har") != whole.lookalike("pupeteer-har")
    # One word holding a name of four: its plural slips are no longer call-bind's.
    policy = ["callbindapplyhelpers"]
    whole = NameIndex(E.NPM, _shipped(E.NPM), first=policy)
    layered = NameIndex.over(_base(E.NPM), policy)
    for name in ("calls-binds-applys-helpers", "call-bind-apply-helper", "callbindaplyhelpers"):
        assert layered.lookalike(name) == whole.lookalike(name), name
    assert _base(E.NPM).lookalike("calls-binds-applys-helpers") is not None


def test_maven_takes_no_layers() -> None:
    with pytest.raises(ValueError, match="Maven"):
        NameIndex.over(NameIndex(E.MAVEN, ["junit:junit"]), ["org.acme:tool"])


def test_a_policy_with_names_of_its_own_shares_the_shipped_index() -> None:
    plain = TyposquatRule(popular={E.NPM: _shipped(E.NPM)})
    mine = TyposquatRule(popular={E.NPM: _shipped(E.NPM)}, internal={E.NPM: ["acme-tool"]})
    shipped, layered = plain.index(E.NPM), mine.index(E.NPM)
    assert layered is not shipped and "acme-tool" in layered and "acme-tool" not in shipped
    assert layered._edits._base is shipped._edits  # built once, looked up under the policy's
