from __future__ import annotations

from dataclasses import dataclass

from stockade.policy.engine import Engine, build_engine
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, Verdict

REF = PackageRef(Ecosystem.PYPI, "demo")


@dataclass
class Fixed:
    name: str
    verdict: Verdict | None

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        return self.verdict


def test_strictest_enforced_verdict_wins() -> None:
    warn = Verdict(Decision.WARN, "licence", "unknown licence")
    block = Verdict(Decision.BLOCK, "deny-list", "denied")
    engine = Engine([Fixed("a", warn), Fixed("b", block), Fixed("c", None)], revision="r")
    assert engine.decide(REF, Facts()) == block
    assert [v.rule for v in engine.explain(REF, Facts())] == ["licence", "deny-list", "c"]


def test_audit_hits_are_reported_but_never_refuse() -> None:
    audit = Verdict(Decision.BLOCK, "age", "too young", audit_only=True)
    engine = Engine([Fixed("age", audit)], revision="r")
    verdict = engine.decide(REF, Facts())
    assert verdict == audit
    assert not verdict.blocks


def test_filter_versions_decides_each_version() -> None:
    class OnlyOld:
        name = "age"

        def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
            if ref.version == "2.0":
                return Verdict(Decision.BLOCK, "age", "2.0 is too young")
            return None

    engine = Engine([OnlyOld()], revision="r")
    verdicts = engine.filter_versions(REF, {"1.0": Facts(), "2.0": Facts()})
    assert verdicts["1.0"].decision is Decision.ALLOW
    assert verdicts["2.0"].blocks


def test_revision_changes_with_internal_namespaces() -> None:
    a = build_engine(None, internal={Ecosystem.PYPI: ("acme-*",)})
    b = build_engine(None, internal={Ecosystem.PYPI: ("other-*",)})
    assert a.revision != b.revision
    assert a.decide(REF, Facts()).decision is Decision.ALLOW


def test_refusal_phrase() -> None:
    verdict = Verdict(Decision.BLOCK, "typosquat",
                      '"reqeusts" looks like a typosquat of "requests"')
    assert verdict.refusal_phrase() == (
        'Blocked by stockade: "reqeusts" looks like a typosquat of "requests" (rule typosquat)'
    )


def test_name_decisions_are_kept_within_a_bound() -> None:
    calls: list[str] = []

    class Counting:
        name = "count"

        def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
            calls.append(ref.name)
            return None

    engine = Engine([Counting()], revision="r")
    # a small bound: two generations of two
    engine._names[Ecosystem.NPM] = type(engine._names[Ecosystem.NPM])(4)
    for name in ("a", "b", "a", "c", "a", "d", "e"):
        engine.decide(PackageRef(Ecosystem.NPM, name), Facts())
    # "a" was asked again before it aged out, so it was kept; "b" was not
    assert calls == ["a", "b", "c", "d", "e"]
    assert len(engine._names[Ecosystem.NPM]) <= 4
    engine.decide(PackageRef(Ecosystem.NPM, "a"), Facts())
    engine.decide(PackageRef(Ecosystem.NPM, "b"), Facts())
    assert calls[-1] == "b" and calls.count("a") == 1
    engine.clear_cache()
    engine.decide(PackageRef(Ecosystem.NPM, "a"), Facts())
    assert calls.count("a") == 2


def test_clear_cache_reaches_the_rules() -> None:
    engine = build_engine(None)
    rule = next(r for r in engine.rules if r.name == "typosquat")
    ref = PackageRef(Ecosystem.PYPI, "reqeusts")
    first = engine.decide(ref, Facts())
    assert first.blocks and engine.decide(ref, Facts()) is first
    assert rule._verdicts[Ecosystem.PYPI].cache_info().currsize == 1
    engine.clear_cache()
    assert rule._verdicts[Ecosystem.PYPI].cache_info().currsize == 0
    assert engine.decide(ref, Facts()) == first
