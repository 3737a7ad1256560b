"""Typosquats caught by what a package is: the tiered typosquat rule, measured.

Prints, for the default policy (the shipped lists):

  (1) recall on bench/data/typosquats.tsv scored as at request time: a squat is new
      when it is requested, so each gets young facts (first release 2 days before,
      1 release, nothing else known): refused by the strong tier (today's detector),
      held or refused by the loose tier, or missed; beside it the name check alone;
  (2) false refusals and holds on real names: the 15,000 most popular per ecosystem
      with the same young facts (the worst case; target 0), and a sample of 20,000
      lesser-known PyPI names (seed 7, as policy_bench (d)) with facts from the
      package list: its month column is the newest upload, so a first release at the
      end of that month is the youngest the project can be, and "releases unknown"
      counts as few: an upper bound of holds; and an estimate, which takes a first
      release at the start of that month and reads one release only from a first
      version (0.0.1, 0.1.0, 1.0.0...) and more from any other. npm's list has no
      dates: its strong tier is measured with an established project's facts (an npm
      document always carries them; the loose tier allows and records there) and on
      names alone (as policy_bench (d)); its loose tier's holds cannot be measured
      here, only their worst case (young facts for every name);
  (3) speed on one core (CPU time of this process, best of five passes, the kinds'
      passes taken in turn and the median of the five rounds' ratios beside the best
      times' ratio): decisions a second on names alone, with old facts (2 years, 40
      releases: most requests) and with young facts (the deep loose search runs),
      over the labelled set and the lesser-known samples of both ecosystems, at
      first sight (every cache emptied before the pass) and asked again (a second
      pass), and the ratio of each to names alone measured in the same run; the
      first sight with old facts against names alone again, the two passes alone in
      turn over 21 rounds (the issue's target); and a version's decision as the
      proxy makes it (no name cache), with old facts against names alone, by the
      engine and by the typosquat rule alone, timed in turn over 21 rounds
      (``--speed``: (3) only);
  (4) with --shapes, instead: each deep shape of the loose tier left out in turn, with
      the labelled squats it catches (tuning and held-out halves) and the lesser-known
      names it holds, so that each shape's worth is seen in one run.

    python -m bench.typosquat_facts --pypi-list PYPI.tsv --npm-names NPM.tsv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import random
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.policy_bench import DATA, lesser_names
from stockade.policy.engine import Engine, build_engine
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, ProjectFacts
from stockade.policy.names import normalize
from stockade.policy.rules.typosquat import TyposquatRule, popular
from stockade.policy.typosquat.loose import SHAPES, LooseIndex, Shapes

csv.field_size_limit(sys.maxsize)
NOW = datetime(2026, 11, 15, tzinfo=UTC)  # when the package lists were taken (their newest month)
FIRST_VERSIONS = frozenset({"0.0.0", "0.0.1", "0.1", "0.1.0", "1.0", "1.0.0", "0.0.1a0"})


def young(now: datetime) -> Facts:
    return Facts(upstream="public", project=ProjectFacts(now - timedelta(days=2), 1))


def old(now: datetime) -> Facts:
    return Facts(upstream="public", project=ProjectFacts(now - timedelta(days=730), 40))


def tier(engine: Engine, ref: PackageRef, facts: Facts) -> str:
    """strong, loose or missed (or allowed) for one decision."""
    verdict = engine.decide(ref, facts)
    if not verdict.blocks:
        return "missed"
    return "loose" if " resembles " in verdict.reason else "strong"


def recall(engine: Engine, now: datetime) -> None:
    rows = list(csv.DictReader((DATA / "typosquats.tsv").open(), delimiter="\t"))
    counts = {"strong": 0, "loose": 0, "missed": 0}
    alone = 0
    missed = []
    unlisted = 0  # missed squats whose target is not among the shipped names
    halves = {0: [0, 0], 1: [0, 0]}  # half -> [missed, caught]
    for row in rows:
        ref = PackageRef(Ecosystem(row["ecosystem"]), row["name"])
        found = tier(engine, ref, young(now))
        counts[found] += 1
        alone += engine.decide(ref, Facts(upstream="public")).blocks
        if found == "missed":
            missed.append(f"{row['name']} ({row['imitates']})")
            eco = Ecosystem(row["ecosystem"])
            unlisted += normalize(eco, row["imitates"]) not in _shipped(eco)
        halves[tuning_half(row["name"])][found != "missed"] += 1
    total = len(rows)
    caught = counts["strong"] + counts["loose"]
    print(f"(1) labelled squats with young facts: {total}; strong (refused) "
          f"{counts['strong']} ({counts['strong'] / total:.0%}), loose (held or refused) "
          f"{counts['loose']} ({counts['loose'] / total:.0%}), missed {counts['missed']}: "
          f"{caught / total:.0%} held or refused (target >= 90%); the name alone: "
          f"{alone / total:.0%}")
    for half, label in ((0, "tuning half"), (1, "held-out half")):
        missed_n, caught_n = halves[half]
        print(f"    {label} (crc32 of the name {'even' if half == 0 else 'odd'}): "
              f"{caught_n} of {missed_n + caught_n} held or refused "
              f"({caught_n / max(1, missed_n + caught_n):.0%})")
    print(f"    missed: {', '.join(missed)}")
    print(f"    of the {len(missed)} missed, {unlisted} imitate a name absent from the shipped "
          f"lists (no likeness can find them): at most {(total - unlisted) / total:.1%} with "
          "these lists")


@functools.cache
def _shipped(ecosystem: Ecosystem) -> frozenset[str]:
    return frozenset(popular(ecosystem))


def tuning_half(name: str) -> int:
    """The half of the labelled set a name is in: 0, the half the loose tier's shapes
    were tuned on; 1, held out (a stable hash of the name)."""
    return zlib.crc32(name.encode()) % 2


def popular_names(engine: Engine, now: datetime) -> None:
    for eco in (Ecosystem.PYPI, Ecosystem.NPM):
        top = popular(eco)[:15000]
        stopped = [n for n in top if engine.decide(PackageRef(eco, n), young(now)).blocks]
        print(f"(2) {eco.value}: {len(stopped)} of the {len(top)} most popular names refused or "
              f"held with young facts (target 0){': ' + ', '.join(stopped[:8]) if stopped else ''}")


def _listed(path: Path) -> dict[str, tuple[str, str]]:
    """Normalised PyPI name -> (version, month) from the package list."""
    out: dict[str, tuple[str, str]] = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)
        for row in rows:
            if len(row) >= 3:
                out.setdefault(normalize(Ecosystem.PYPI, row[0]), (row[1], row[2]))
    return out


def _month(text: str) -> tuple[datetime, datetime] | None:
    try:
        start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        return None
    end = (start + timedelta(days=32)).replace(day=1) - timedelta(seconds=1)
    return start, end


def lesser_pypi(engine: Engine, sample: list[str], listed: dict[str, tuple[str, str]],
                now: datetime) -> None:
    bound = {"refused": 0, "held": 0}
    estimate = {"refused": 0, "held": 0}
    examples: list[str] = []
    for name in sample:
        version, month = listed.get(normalize(Ecosystem.PYPI, name), ("", ""))
        span = _month(month)
        ref = PackageRef(Ecosystem.PYPI, name)
        if span is None:
            facts = [Facts(upstream="public", project=ProjectFacts())] * 2
        else:
            facts = [
                Facts(upstream="public", project=ProjectFacts(min(span[1], now), None)),
                Facts(upstream="public", project=ProjectFacts(
                    min(span[0], now), 1 if version in FIRST_VERSIONS else 10))]
        for counts, fact in zip((bound, estimate), facts, strict=True):
            verdict = engine.decide(ref, fact)
            if verdict.blocks:
                counts["held" if verdict.decision is Decision.HOLD else "refused"] += 1
                if counts is estimate and len(examples) < 8:
                    examples.append(f"{name}~{verdict.target}")
    n = len(sample)
    for label, counts in (("upper bound", bound), ("estimate", estimate)):
        print(f"(2) pypi lesser-known, {label}: {counts['refused']} of {n} refused "
              f"({counts['refused'] / n:.2%}, target <= 0.5%), {counts['held']} held "
              f"({counts['held'] / n:.2%}, target <= 1%)")
    print(f"    held or refused in the estimate, e.g. {', '.join(examples)}")


def lesser_npm(engine: Engine, sample: list[str], now: datetime) -> None:
    # An npm document always carries its project's age: a real name is refused only by
    # the strong tier, whatever its age; an established project's facts (old) show which
    # (a borderline match is allowed and recorded there, and refused on the name alone).
    refused = recorded = alone = 0
    for name in sample:
        ref = PackageRef(Ecosystem.NPM, name)
        verdict = engine.decide(ref, old(now))
        refused += verdict.blocks
        recorded += verdict.decision is Decision.WARN
        alone += engine.decide(ref, Facts(upstream="public")).blocks
    n = len(sample)
    print(f"(2) npm lesser-known: the strong tier refuses {refused} of {n} "
          f"({refused / n:.2%}, target <= 0.5%) at any age (with an established project's "
          f"facts, 2 years and 40 releases, {recorded} more are allowed and recorded); on "
          f"names alone {alone} ({alone / n:.2%}); the loose tier's holds cannot be "
          "measured here (the npm list has no dates)")
    held = sum(engine.decide(PackageRef(Ecosystem.NPM, n), young(now)).blocks for n in sample)
    print(f"    with young facts for every name, {held} of {len(sample)} "
          f"({held / len(sample):.2%}) would be held or refused: the share of young "
          "lesser-known npm projects held, if a name's shape says nothing of its age")


def young_share(engine: Engine, sample: list[str], now: datetime) -> None:
    """The same figure for PyPI, to compare: the sample with young facts for all."""
    held = sum(engine.decide(PackageRef(Ecosystem.PYPI, n), young(now)).blocks
               for n in sample)
    print(f"(2) pypi lesser-known with young facts for every name: {held} of {len(sample)} "
          f"({held / len(sample):.2%}) held or refused")


def speed(engine: Engine, refs: list[PackageRef], now: datetime, rounds: int = 5) -> None:
    """Each kind's passes taken in turn, ``rounds`` times, the order turning each round,
    so that a shared machine's drift falls on every kind alike: the best time of each,
    and the median of the rounds' ratios to names alone."""
    kinds = {"names alone": Facts(upstream="public"), "old facts": old(now),
             "young facts": young(now)}
    first: dict[str, list[float]] = {label: [] for label in kinds}
    again: dict[str, list[float]] = {label: [] for label in kinds}
    labels = list(kinds)
    for i in range(rounds):
        for label in labels[i % len(labels):] + labels[:i % len(labels)]:
            facts = kinds[label]
            engine.clear_cache()
            start = time.process_time()
            for ref in refs:
                engine.decide(ref, facts)
            first[label].append(time.process_time() - start)
            start = time.process_time()
            for ref in refs:
                engine.decide(ref, facts)
            again[label].append(time.process_time() - start)
    first_sight_pair(engine, refs, kinds["names alone"], kinds["old facts"])
    versions_speed(engine, refs, kinds["names alone"], kinds["old facts"])
    for label in kinds:
        cold, warm = min(first[label]), min(again[label])
        print(f"(3) {label}: first sight {len(refs) / cold:,.0f} decisions/s on one "
              f"core (time / names alone {cold / min(first['names alone']):.3f}, median of "
              f"{rounds} rounds {_median_ratio(first[label], first['names alone']):.3f}); "
              f"asked again {len(refs) / warm:,.0f}/s (time / names alone "
              f"{warm / min(again['names alone']):.3f})")


def _median_ratio(times: list[float], alone: list[float]) -> float:
    """The median of the rounds' ratios of ``times`` to ``alone``, round by round."""
    ratios = sorted(a / b for a, b in zip(times, alone, strict=True))
    return ratios[len(ratios) // 2]


def in_turn(run: Callable[[Facts], None], alone: Facts, facts: Facts,
            rounds: int) -> tuple[float, float, float]:
    """``run`` (one timed pass) with ``facts`` and with ``alone`` in turn, ``rounds``
    times each, alternating which goes first, so that a shared machine's drift falls on
    both: the best time of each, and the median of the rounds' ratios of the first to
    the second."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(rounds):
        for with_facts in ((True, False) if i % 2 else (False, True)):
            start = time.process_time()
            run(facts if with_facts else alone)
            times[with_facts].append(time.process_time() - start)
    return min(times[True]), min(times[False]), _median_ratio(times[True], times[False])


def _pair_line(what: str, count: int, best: tuple[float, float, float], without: str,
               rounds: int) -> str:
    with_facts, alone, median = best
    return (f"(3) {what}: {count / with_facts:,.0f}/s with old facts, {count / alone:,.0f}/s "
            f"{without} (time ratio {with_facts / alone:.3f}; median of {rounds} rounds "
            f"{median:.3f}; target <= 1.05)")


def first_sight_pair(engine: Engine, refs: list[PackageRef], alone: Facts, facts: Facts,
                     rounds: int = 21) -> None:
    """The first sight with old facts against the first sight on the name alone, the
    issue's target, timed ``in_turn`` as a version's is (every cache emptied before
    each pass)."""
    def first_sight(fact: Facts) -> None:
        engine.clear_cache()
        for ref in refs:
            engine.decide(ref, fact)

    print(_pair_line("a first sight, old facts against names alone, in turn", len(refs),
                     in_turn(first_sight, alone, facts, rounds), "on names alone", rounds))


def versions_speed(engine: Engine, refs: list[PackageRef], alone: Facts, facts: Facts,
                   rounds: int = 21) -> None:
    """A version's decision with old facts against names alone, as the proxy makes
    them (every version of a document decided on the facts read from it: no name cache
    is used, with or without a project's facts), by the engine and by the typosquat
    rule alone (no engine): where a gap between the two lies; timed ``in_turn``."""
    versions = [PackageRef(r.ecosystem, r.name, "1.0.0") for r in refs]
    rule = next(r for r in engine.rules if isinstance(r, TyposquatRule))
    engine.clear_cache()
    for ref in versions:  # the rules' name caches warm, as for a second document
        engine.decide(ref, alone)
        engine.decide(ref, facts)
    for label, decide in (("the engine", engine.decide), ("the typosquat rule alone",
                                                          rule.evaluate)):
        def each(fact: Facts, decide: Callable[[PackageRef, Facts], object] = decide) -> None:
            for ref in versions:
                decide(ref, fact)

        print(_pair_line(f"a version's decision, as the proxy makes them, by {label}",
                         len(versions), in_turn(each, alone, facts, rounds),
                         "without a project's facts", rounds))


def _variants(shapes: Shapes) -> list[tuple[str, Shapes]]:
    """The shapes of one ecosystem, and each with one deep shape left out."""
    out = [("all shapes", shapes)]
    if shapes.two_edits:
        out.append(("without two edits", dataclasses.replace(shapes, two_edits=False)))
    for i, row in enumerate(shapes.ratios):
        out.append((f"without {row}", dataclasses.replace(
            shapes, ratios=shapes.ratios[:i] + shapes.ratios[i + 1:])))
    for i, inner in enumerate(shapes.contained):
        out.append((f"without {inner}", dataclasses.replace(
            shapes, contained=shapes.contained[:i] + shapes.contained[i + 1:])))
    if shapes.anagram_rank:
        out.append(("without reordered letters", dataclasses.replace(shapes, anagram_rank=0)))
    if shapes.dropped_word:
        out.append(("without a word left out", dataclasses.replace(shapes,
                                                                   dropped_word=False)))
    if shapes.slip_min:
        out.append(("without a slip beyond the one-edit rank", dataclasses.replace(
            shapes, slip_min=0)))
    if shapes.joined_rank:
        out.append(("without two run together", dataclasses.replace(shapes, joined_rank=0)))
    if shapes.markers:
        out.append(("without a marker dropped or added with a version",
                    dataclasses.replace(shapes, markers=())))
    if shapes.version_dropped:
        out.append(("without a version dropped", dataclasses.replace(
            shapes, version_dropped=False)))
    return out


def shapes_table(engine: Engine, samples: dict[Ecosystem, list[str]],
                 listed: dict[str, tuple[str, str]], now: datetime, npm_n: int) -> None:
    """(4) What each deep shape of the loose tier adds, in one run: the labelled squats
    it alone catches (tuning and held-out halves), and the lesser-known names it alone
    holds: PyPI's young ones (upper bound, as (2)), npm's first ``npm_n`` of the sample
    with young facts (the share of young npm projects held)."""
    rows = list(csv.DictReader((DATA / "typosquats.tsv").open(), delimiter="\t"))
    for eco in (Ecosystem.PYPI, Ecosystem.NPM):
        def unrefused(name: str, eco: Ecosystem = eco) -> bool:
            verdict = engine.decide(PackageRef(eco, name), Facts(upstream="public"))
            return not verdict.blocks or "resembles" in verdict.reason
        squats = [r["name"] for r in rows if r["ecosystem"] == eco.value
                  and unrefused(r["name"])]
        if eco is Ecosystem.PYPI:
            lesser = []
            for name in samples[eco]:
                span = _month(listed.get(normalize(eco, name), ("", ""))[1])
                if span is not None and now - min(span[1], now) < timedelta(days=30):
                    lesser.append(name)
            what = f"{len(lesser)} young lesser-known"
        else:
            lesser = samples[eco][:npm_n]
            what = f"{len(lesser)} lesser-known (as if young)"
        lesser = [n for n in lesser if unrefused(n)]
        names = set(popular(eco))
        print(f"(4) {eco.value}: the loose tier's catches among {len(squats)} labelled squats "
              f"the strong tier does not refuse, and its holds among {what} names")
        for label, shapes in _variants(SHAPES[eco]):
            index = LooseIndex(eco, popular(eco), names, shapes)

            def hit(name: str, index: LooseIndex = index, eco: Ecosystem = eco) -> bool:
                return index.match(normalize(eco, name), deep=True) is not None
            caught = [n for n in squats if hit(n)]
            tuning = sum(tuning_half(n) == 0 for n in caught)
            held = sum(hit(n) for n in lesser)
            print(f"    {label}: {len(caught)} caught (tuning half {tuning}, held-out "
                  f"{len(caught) - tuning}); {held} held ({held / max(1, len(lesser)):.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pypi-list", type=Path, required=True,
                        help="the PyPI package list (name, version, month, rank, summary)")
    parser.add_argument("--npm-names", type=Path, required=True, help="the npm package list")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shapes", action="store_true",
                        help="only (4): each deep shape of the loose tier left out in turn")
    parser.add_argument("--speed", action="store_true",
                        help="only (3): decisions a second, and a version's decision with "
                             "facts against names alone (engine and rule)")
    parser.add_argument("--shapes-npm", type=int, default=5000,
                        help="npm names of the sample (4) looks at (default 5,000)")
    args = parser.parse_args()
    engine = build_engine(None)
    for rule in engine.rules:  # decide as of when the lists were taken
        if hasattr(rule, "now"):
            rule.now = lambda: NOW
    samples = {}
    for eco, path in ((Ecosystem.PYPI, args.pypi_list), (Ecosystem.NPM, args.npm_names)):
        names = lesser_names(path, eco)
        samples[eco] = random.Random(args.seed).sample(names, min(20000, len(names)))
    if args.shapes:
        shapes_table(engine, samples, _listed(args.pypi_list), NOW, args.shapes_npm)
        return
    if not args.speed:
        recall(engine, NOW)
        popular_names(engine, NOW)
        lesser_pypi(engine, samples[Ecosystem.PYPI], _listed(args.pypi_list), NOW)
        young_share(engine, samples[Ecosystem.PYPI], NOW)
        lesser_npm(engine, samples[Ecosystem.NPM], NOW)
    labelled = [PackageRef(Ecosystem(r["ecosystem"]), r["name"]) for r in csv.DictReader(
        (DATA / "typosquats.tsv").open(), delimiter="\t")]
    refs = labelled + [PackageRef(eco, n) for eco, names in samples.items() for n in names]
    speed(engine, refs, NOW)


if __name__ == "__main__":
    main()
