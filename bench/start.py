"""What a process pays to start: importing the app, and preparing the typosquat indexes.

    python -m bench.start [--rounds 3] [--base-tree DIR]

Each measure runs in a fresh interpreter (``PYTHONPATH`` and working folder the
checkout measured), and prints its CPU time (user and system) and memory:

- ``import stockade.proxy.app``: what every worker process imports; peak RSS;
- ``import stockade.proxy.cli``: what ``stockade serve`` imports (the app and the
  other commands' modules) before it reads its configuration;
- ``TyposquatRule().prepare()`` with the index files present (one untimed run writes
  them into a temporary ``STOCKADE_INDEX_CACHE`` first): the name indexes of the
  shipped lists, read from their files; RSS after it.

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
print(json.dumps({{"cpu_s": time.process_time() - started,
                  "peak_rss_mib": usage.ru_maxrss / 1024}}))
"""

MEASURES = {
    "import stockade.proxy.app": "import stockade.proxy.app",
    "import stockade.proxy.cli": "import stockade.proxy.cli",
    "typosquat indexes from their files": (
        "from stockade.policy.rules.typosquat import TyposquatRule\n"
        "TyposquatRule().prepare()"),
}


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
                               for key in ("cpu_s", "peak_rss_mib")}
                       for label, runs in got.items()}
            for label, figures in medians.items():
                print(f"{measure}, {label}: CPU {figures['cpu_s']:.2f} s, peak RSS "
                      f"{figures['peak_rss_mib']:.1f} MiB (median of {args.rounds})")
            if "base" in medians:
                base, this = medians["base"], medians["this"]
                print(f"{measure}, this/base: CPU {this['cpu_s'] / base['cpu_s']:.2f}x, "
                      f"peak RSS {this['peak_rss_mib'] / base['peak_rss_mib']:.2f}x")


if __name__ == "__main__":
    main()
