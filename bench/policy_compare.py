"""Name-check speed of this checkout against another, in alternating passes of one process.

Prints, for the default policy of each tree (this checkout's ``stockade`` and that of
OTHER, a checkout of another commit: ``git worktree add /tmp/prev COMMIT``), names
checked per CPU second on one core over the mix of ``bench.policy_bench`` (a), best and
median of the passes, and the median over rounds of the ratio of this tree's time to
OTHER's. The passes alternate within each round, so a shared machine's drift between
runs, which moves names/s by a third, touches both trees alike; the ratio is the
figure to read.

Then it compares what the two trees decide (decision, rule, target and reason) over
the mix, the labelled set of ``bench/data/typosquats.tsv`` and three lesser-known
samples per ecosystem (seeds 7, 23 and 99, as ``policy_bench`` (d) draws them), and
prints how many names are decided differently, with examples: a change meant only to
be faster should show none. It compares them twice: on the name alone, and with the
facts of a young project (first release two days ago, one release), where the loose
tier's deep search runs.

    python -m bench.policy_compare OTHER [--rounds N] [--pypi-names FILE] [--npm-names FILE]
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.policy_bench import DATA, lesser_names, speed_mix
from stockade.policy.model import Ecosystem

HERE = Path(__file__).resolve().parent.parent
SEEDS = (7, 23, 99)  # the lesser-known samples whose decisions are compared


def _load(tree: Path, mix: list[tuple[str, str]]) -> tuple[Any, list[Any], Any, Any]:
    """The default engine of ``tree``'s stockade, ``mix`` as its references, its facts
    of the name alone and of a young project."""
    for module in [m for m in sys.modules if m == "stockade" or m.startswith("stockade.")]:
        del sys.modules[module]
    sys.path.insert(0, str(tree))
    try:
        engine_module = importlib.import_module("stockade.policy.engine")
        model = importlib.import_module("stockade.policy.model")
    finally:
        sys.path.remove(str(tree))
    if not Path(str(engine_module.__file__)).resolve().is_relative_to(tree):
        sys.exit(f"{tree}: stockade was imported from {engine_module.__file__} instead")
    if not hasattr(engine_module.Engine, "clear_cache"):
        sys.exit(f"{tree}: its Engine has no clear_cache, which each pass needs")
    refs = [model.PackageRef(model.Ecosystem(eco), name) for eco, name in mix]
    gc.collect()
    gc.freeze()  # the mix is the bench's, not the engine's: keep it out of collections
    young = model.Facts(upstream="public", project=model.ProjectFacts(
        datetime.now(UTC) - timedelta(days=2), 1))
    return engine_module.build_engine(None), refs, model.Facts(upstream="public"), young


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="a checkout of another commit")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pypi-names", type=Path)
    parser.add_argument("--npm-names", type=Path)
    args = parser.parse_args()
    other = args.other.resolve()
    if not (other / "stockade" / "policy" / "engine.py").is_file():
        sys.exit(f"{other}: not a stockade checkout (no stockade/policy/engine.py)")
    lesser = {Ecosystem.PYPI: lesser_names(args.pypi_names, Ecosystem.PYPI),
              Ecosystem.NPM: lesser_names(args.npm_names, Ecosystem.NPM)}
    mix = [(ref.ecosystem.value, ref.name) for ref in speed_mix(lesser)]
    others = _decision_names(lesser)
    trees = {"this checkout": HERE, "other": other}
    loaded = {label: _load(tree, mix + others) for label, tree in trees.items()}
    times: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, (engine, refs, facts, _) in loaded.items():
            timed = refs[:len(mix)]
            engine.clear_cache()  # every name is new to each pass, as in policy_bench (a)
            started = time.process_time()
            for ref in timed:
                engine.decide(ref, facts)
            times[label].append(time.process_time() - started)
    for label, tree in trees.items():
        spent = times[label]
        print(f"{label} ({tree}): {len(mix) / min(spent):,.0f} names/s best, "
              f"{len(mix) / statistics.median(spent):,.0f} median, over {args.rounds} passes")
    ratio = statistics.median(mine / theirs for mine, theirs in
                              zip(times["this checkout"], times["other"], strict=True))
    print(f"time of this checkout / other, median over {args.rounds} rounds: {ratio:.3f}")
    _compare_decisions(loaded)


def _decision_names(lesser: dict[Ecosystem, list[str]]) -> list[tuple[str, str]]:
    """The labelled typosquats and the lesser-known samples, as (ecosystem, name)."""
    with (DATA / "typosquats.tsv").open() as fh:
        names = [(row["ecosystem"], row["name"]) for row in csv.DictReader(fh, delimiter="\t")]
    for eco, listed in lesser.items():
        for seed in SEEDS:
            sample = random.Random(seed).sample(listed, min(20000, len(listed)))
            names += [(eco.value, name) for name in sample]
    return names


def _compare_decisions(loaded: dict[str, tuple[Any, list[Any], Any, Any]]) -> None:
    for at, what in ((2, "on the name alone"), (3, "with a young project's facts")):
        decided = {}
        for label, held in loaded.items():
            engine, refs, facts = held[0], held[1], held[at]
            engine.clear_cache()
            decided[label] = [(ref.name, *_verdict(engine.decide(ref, facts))) for ref in refs]
        pairs = list(zip(decided["this checkout"], decided["other"], strict=True))
        differ = [(mine, theirs) for mine, theirs in pairs if mine != theirs]
        print(f"decisions {what} over {len(pairs):,} names (the mix, the labelled set and "
              f"lesser-known samples of seeds {', '.join(map(str, SEEDS))}): {len(differ)} "
              "decided differently")
        for mine, theirs in differ[:10]:
            print(f"    {mine[0]}: this checkout {mine[1:]}, other {theirs[1:]}")


def _verdict(verdict: Any) -> tuple[str, str, str | None, str]:
    return verdict.decision.value, verdict.rule, verdict.target, verdict.reason


if __name__ == "__main__":
    main()
