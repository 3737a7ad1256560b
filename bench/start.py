"""What a process pays to start: importing the app, and preparing the typosquat indexes.

    python -m bench.start [--rounds 3] [--base-tree DIR]

Each measure runs in a fresh interpreter (``PYTHONPATH`` and working folder the
checkout measured), and prints its CPU time (user and system) and memory:

- ``import stockade.proxy.app``: what every worker process imports; peak RSS;
- ``import stockade.proxy.cli``: what ``stockade serve`` imports (the app and the
  other commands' modules) before it reads its configuration;
- the name indexes alone (``TyposquatRule().index``, not the loose search's), read
  from their files;
- ``TyposquatRule().prepare()`` with the index files present (one untimed run writes
  them into a temporary ``STOCKADE_INDEX_CACHE`` first): the name indexes of the
  shipped lists, read from their files; RSS after it;
- the default policy's engine built (its indexes from their files) and 10,000 names
  decided, each new to it (the first 10,000 of ``policy_bench``'s mix: popular names,
  lesser-known ones and typos): a worker under load; RSS and PSS after it (PSS: shared
  pages divided among the processes mapping them, here the index files' pages with
  any other process that maps them too);
- the default policy's engine built and its indexes ready (not counted), then 1,000
  names of that mix decided with young facts (2 days old, 1 release), each new to it:
  the deep loose search's first look-ups, whose buckets are read from the index files
  as they are first reached; CPU of those decisions, RSS and PSS after.

Modules are read compiled, as from an installed package: the untimed first runs
write each checkout's ``.pyc`` files under a temporary ``PYTHONPYCACHEPREFIX``.

With ``--base-tree DIR`` (a checkout of another commit, ``git worktree add DIR REV``)
the runs alternate between it and this checkout, and the ratio of the medians is
printed. CPU time, not wall time: other processes' load does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_MEASURE = """
import json, resource, time
started = time.process_time()
{body}
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = time.process_time() - started
now = {{}}
with open("/proc/self/smaps_rollup") as rollup:  # Linux; elsewhere RSS and PSS are left out
    for line in rollup:
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            now[key.lower() + "_mib"] = int(value.split()[0]) / 1024
print(json.dumps({{"cpu_s": cpu, "peak_rss_mib": usage.ru_maxrss / 1024, **now}}))
"""

MEASURES = {
    "import stockade.proxy.app": "import stockade.proxy.app",
    "import stockade.proxy.cli": "import stockade.proxy.cli",
    "typosquat name indexes (not the loose ones) from their files": (
        "from stockade.policy.model import Ecosystem\n"
        "from stockade.policy.rules.typosquat import TyposquatRule\n"
        "rule = TyposquatRule()\n"
        "for ecosystem in Ecosystem:\n"
        "    rule.index(ecosystem)"),
    "typosquat indexes from their files": (
        "from stockade.policy.rules.typosquat import TyposquatRule\n"
        "TyposquatRule().prepare()"),
    "default policy, 10,000 names decided": (
        "from bench.policy_bench import speed_mix\n"
        "from stockade.policy.engine import build_engine\n"
        "from stockade.policy.model import Facts\n"
        "refs = speed_mix({})[:10000]\n"
        "started = time.process_time()  # the mix is the bench's: not counted\n"
        "engine, facts = build_engine(None), Facts(upstream='public')\n"
        "for ref in refs:\n"
        "    engine.decide(ref, facts)"),
    "default policy ready, then 1,000 names first seen young": (
        "from datetime import UTC, datetime, timedelta\n"
        "from bench.policy_bench import speed_mix\n"
        "from stockade.policy.engine import build_engine\n"
        "from stockade.policy.model import Facts, ProjectFacts\n"
        "refs = speed_mix({})[:1000]\n"
        "engine = build_engine(None)\n"
        "old = Facts(upstream='public', project=ProjectFacts(\n"
        "    datetime.now(UTC) - timedelta(days=730), 40))\n"
        "for ref in {r.ecosystem: r for r in refs}.values():  # every index ready\n"
        "    engine.decide(ref, old)\n"
        "young = Facts(upstream='public', project=ProjectFacts(\n"
        "    datetime.now(UTC) - timedelta(days=2), 1))\n"
        "started = time.process_time()  # only the young decisions: the deep search\n"
        "for ref in refs:\n"
        "    engine.decide(ref, young)"),
}
_FIGURES = ("cpu_s", "peak_rss_mib", "rss_mib", "pss_mib")


def run_one(tree: Path, body: str, cache: Path) -> dict[str, float]:
    """One measure in a fresh interpreter over ``tree``: its CPU time and peak RSS."""
    # compiled modules kept per checkout under the run's folder: both checkouts read
    # them, as an installed package does, whether or not their trees hold any
    env = {**os.environ, "PYTHONPATH": str(tree), "STOCKADE_INDEX_CACHE": str(cache),
           "PYTHONPYCACHEPREFIX": str(cache.with_name(cache.name + "-pyc"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, "-c", _MEASURE.format(body=body)], cwd=tree,
                         env=env, capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-tree", type=Path, help="a checkout to compare with")
    args = parser.parse_args()
    trees = {"this": Path(__file__).resolve().parents[1]}
    if args.base_tree is not None:
        trees = {"base": args.base_tree.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="stockade-start-") as folder:
        caches = {label: Path(folder) / label for label in trees}
        for label, tree in trees.items():  # the index and .pyc files, once per checkout
            for body in MEASURES.values():
                run_one(tree, body, caches[label])
        for measure, body in MEASURES.items():
            got: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
            for _ in range(args.rounds):
                for label, tree in trees.items():
                    got[label].append(run_one(tree, body, caches[label]))
            medians = {label: {key: statistics.median(r[key] for r in runs)
                               for key in _FIGURES if all(key in r for r in runs)}
                       for label, runs in got.items()}
            for label, figures in medians.items():
                after = "".join(f", {name} {figures[key]:.1f} MiB" for key, name in (
                    ("rss_mib", "RSS after"), ("pss_mib", "PSS after")) if key in figures)
                print(f"{measure}, {label}: CPU {figures['cpu_s']:.2f} s, peak RSS "
                      f"{figures['peak_rss_mib']:.1f} MiB{after} (median of {args.rounds})")
            if "base" in medians:
                base, this = medians["base"], medians["this"]
                ratios = "".join(f", {name} {this[key] / base[key]:.2f}x" for key, name in (
                    ("peak_rss_mib", "peak RSS"), ("rss_mib", "RSS after"),
                    ("pss_mib", "PSS after")) if key in this and key in base)
                print(f"{measure}, this/base: CPU {this['cpu_s'] / base['cpu_s']:.2f}x"
                      f"{ratios}")


if __name__ == "__main__":
    main()
