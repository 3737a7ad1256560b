"""What looser name checks would cost: the typosquat detector's trade-off, measured.

The detection target (90% of the labelled typosquats) and the budget for lesser-known
names (at most 1% refused) pull against each other. This bench puts numbers on that.
For each of a few looser checks, plain and free of the detector's guards, it prints
what the shipped detector would catch and refuse with that check added:

  - the labelled typosquats of bench/data/typosquats.tsv caught (as policy_bench's (b));
  - the lesser-known real names refused, per ecosystem (as policy_bench's (d): the same
    20,000-name samples, beyond the 20,000 most installed).

A name among the 20,000 most installed is never refused by any check, as by the
detector. Names are compared as the detector's skeletons: normalised, lower case,
without separators, look-alike characters folded, so separator variants are no edit
at all.

The checks:
  one edit       Damerau-Levenshtein distance at most 1 (a letter added, dropped,
                 changed, or two swapped) to a protected name of 5 letters or more,
                 any rank (the shipped lists: 15,000 PyPI names, 125,000 npm ones);
  two edits      distance at most 2 to one of the 20,000 most installed names of 8
                 letters or more;
  ratio >= 85    rapidfuzz's fuzz.ratio at least 85 against the 1,000 most installed;
  contains       the name contains one of the 1,000 most installed names of 4 letters or
                 more, with anything added before or after it (affixes, joined names);
  all four       any of them.

    python -m bench.policy_ceiling --pypi-names FILE --npm-names FILE [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Callable
from pathlib import Path

from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from bench.policy_bench import DATA, FACTS, lesser_names
from stockade.policy.engine import build_engine
from stockade.policy.model import Ecosystem, PackageRef
from stockade.policy.names import normalize
from stockade.policy.rules.typosquat import popular
from stockade.policy.typosquat import POPULAR_RANK, skeleton
from stockade.policy.typosquat.forms import deletions

ECOSYSTEMS = (Ecosystem.PYPI, Ecosystem.NPM)
Check = Callable[[str], "str | None"]


def compact(eco: Ecosystem, name: str) -> str:
    """The form the checks compare: the detector's skeleton of the normalised name."""
    return skeleton(eco, normalize(eco, name))


def one_edit(protected: list[str]) -> Check:
    """Distance at most 1 to a protected name of 5 letters or more."""
    index: dict[str, list[str]] = {}
    for name in protected:
        if len(name) >= 5:
            for key in deletions(name):
                index.setdefault(key, []).append(name)

    def check(name: str) -> str | None:
        for key in deletions(name):
            for target in index.get(key, ()):
                if target != name and \
                        DamerauLevenshtein.distance(name, target, score_cutoff=1) <= 1:
                    return target
        return None
    return check


def two_edits(protected: list[str]) -> Check:
    """Distance at most 2 to a protected name of 8 letters or more."""
    by_length: dict[int, list[str]] = {}
    for name in protected:
        if len(name) >= 8:
            by_length.setdefault(len(name), []).append(name)

    def check(name: str) -> str | None:
        for length in range(len(name) - 2, len(name) + 3):
            for target, _, _ in process.extract(name, by_length.get(length, ()), limit=2,
                                                scorer=DamerauLevenshtein.distance,
                                                score_cutoff=2):
                if target != name:
                    return target
        return None
    return check


def ratio(protected: list[str]) -> Check:
    """fuzz.ratio at least 85 against a protected name."""
    def check(name: str) -> str | None:
        for target, _, _ in process.extract(name, protected, scorer=fuzz.ratio,
                                            score_cutoff=85, limit=2):
            if target != name:
                return target
        return None
    return check


def contains(protected: list[str]) -> Check:
    """The name holds a protected name of 4 letters or more, with more around it."""
    inner = frozenset(n for n in protected if len(n) >= 4)

    def check(name: str) -> str | None:
        for start in range(len(name)):
            for end in range(start + 4, len(name) + 1):
                if name[start:end] in inner and end - start < len(name):
                    return name[start:end]
        return None
    return check


def checks(eco: Ecosystem) -> dict[str, Check]:
    names = list(dict.fromkeys(compact(eco, n) for n in popular(eco)))
    return {"one edit": one_edit(names), "two edits": two_edits(names[:POPULAR_RANK]),
            "ratio >= 85": ratio(names[:1000]), "contains": contains(names[:1000])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pypi-names", type=Path, required=True)
    parser.add_argument("--npm-names", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7, help="the sample for (d) (default 7)")
    args = parser.parse_args()
    engine = build_engine(None)
    labelled = list(csv.DictReader((DATA / "typosquats.tsv").open(), delimiter="\t"))
    samples = {}
    for eco, path in ((Ecosystem.PYPI, args.pypi_names), (Ecosystem.NPM, args.npm_names)):
        names = lesser_names(path, eco)
        samples[eco] = random.Random(args.seed).sample(names, min(20000, len(names)))
    known = {eco: frozenset(compact(eco, n) for n in popular(eco)[:POPULAR_RANK])
             for eco in ECOSYSTEMS}
    by_eco = {eco: checks(eco) for eco in ECOSYSTEMS}

    def refused(eco: Ecosystem, name: str) -> dict[str, bool]:
        """Per check (and the detector alone, as ''): is the name refused?"""
        shipped = engine.decide(PackageRef(eco, name), FACTS).blocks
        mine = compact(eco, name)
        out = {"": shipped}
        for label, check in by_eco[eco].items():
            out[label] = shipped or (mine not in known[eco] and check(mine) is not None)
        out["all four"] = any(out.values())
        return out

    caught = {label: 0 for label in ("", *by_eco[Ecosystem.PYPI], "all four")}
    rows = [r for r in labelled if Ecosystem(r["ecosystem"]) in ECOSYSTEMS]
    beyond = []
    for row in rows:
        verdicts = refused(Ecosystem(row["ecosystem"]), row["name"])
        for label, hit in verdicts.items():
            caught[label] += hit
        if not verdicts["all four"]:
            beyond.append(f"{row['name']} ({row['imitates']}, {row['kind']})")
    lesser = {eco: {label: 0 for label in caught} for eco in ECOSYSTEMS}
    examples: dict[str, list[str]] = {label: [] for label in caught}
    for eco in ECOSYSTEMS:
        for name in samples[eco]:
            verdicts = refused(eco, name)
            for label, hit in verdicts.items():
                lesser[eco][label] += hit
                if hit and len(examples[label]) < 6 and not verdicts[""]:
                    examples[label].append(name)
    print(f"PyPI and npm typosquats labelled: {len(rows)}; lesser-known sample: "
          f"{len(samples[Ecosystem.PYPI])} PyPI and {len(samples[Ecosystem.NPM])} npm names "
          f"(seed {args.seed})")
    print("| check added to the detector | labelled caught (target >= 90%) "
          "| PyPI lesser-known refused | npm lesser-known refused (target <= 1%) |")
    print("| --- | --- | --- | --- |")
    for label in caught:
        shares = [lesser[eco][label] / len(samples[eco]) for eco in ECOSYSTEMS]
        print(f"| {label or 'none (the shipped detector)'} | {caught[label]}/{len(rows)} "
              f"({caught[label] / len(rows):.0%}) | {shares[0]:.2%} | {shares[1]:.2%} |")
    for label, names in examples.items():
        if label:
            print(f"    {label}, real names it adds to the refused: {', '.join(names)}")
    print(f"    caught by none: {', '.join(beyond)}")


if __name__ == "__main__":
    main()
