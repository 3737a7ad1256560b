"""Every speed and memory row in one command: warm serving against nginx, twenty cold
20 MB packuments, installs through stockade against straight from the upstream, and
start time, memory per process, cores used and a cold burst's upstream requests.

    python -m bench.speed [--quick] [--base-tree DIR] [--duration S] [--rounds N]
                          [--only NAME ...]

Runs, one after another, each in its own process and each starting its own nginx,
static or fake upstreams, stockade (default settings) and clients on 127.0.0.1:

- ``bench.serving``: warm GETs of 22 KB and ~1 MB files, the simple page, packuments
  and the 20 MB packument in four forms, as req/s ratios to nginx, with p99 and CPU
  per request (with ``--base-tree``, first for that checkout, then for this one);
- ``bench.cold_packuments``: peak memory of the process tree and other requests' p99
  while twenty different 20 MB packuments are fetched cold (``--base-tree``);
- ``bench.installs``: pip, npm and mvn installs through a warm stockade against the
  same install straight from the upstream, in pairs;
- ``bench.workers``: start to first answer, RSS and PSS per process, req/s per worker
  count and the upstream requests of 50 concurrent cold requests.

Each prints its own table with the baseline from the same run and the target beside
it; this command adds nothing but the order and a heading. ``--quick`` makes each a
smoke run (seconds, not minutes; the figures are then not worth quoting). Exits
non-zero when one of them failed, after running the others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHES = ("serving", "cold_packuments", "installs", "workers")


def commands(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(benchmark, its options) in the order they run, with this run's options."""
    base = [] if args.base_tree is None else [str(args.base_tree.resolve())]
    quick = args.quick
    timing = [*(["--duration", str(args.duration)] if args.duration else []),
              *(["--rounds", str(args.rounds)] if args.rounds else [])]
    serving = ["--quick"] if quick else timing
    return [
        # serving measures one stockade beside nginx: the base's run first, then this
        *([("serving", [*serving, "--stockade-tree", *base])] if base else []),
        ("serving", serving),
        ("cold_packuments", [*(["--count", "2"] if quick else []),
                             *(["--base-tree", *base] if base else [])]),
        ("installs", ["--pairs", "1"] if quick else []),
        ("workers", ["--duration", "1", "--rounds", "1"] if quick else timing),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of each")
    parser.add_argument("--base-tree", type=Path,
                        help="a checkout of another commit, measured in the same run "
                             "where a benchmark can (serving, cold_packuments)")
    parser.add_argument("--duration", type=float,
                        help="seconds per wrk run of serving and workers (their defaults: "
                             "15 and 5)")
    parser.add_argument("--rounds", type=int, help="rounds of serving and workers (3)")
    parser.add_argument("--only", action="append", choices=BENCHES,
                        help="run only this one (repeatable)")
    args = parser.parse_args()
    failed = []
    for name, extra in commands(args):
        if args.only and name not in args.only:
            continue
        command = [sys.executable, "-m", f"bench.{name}", *extra]
        print(f"\n## {' '.join(['python', *command[1:]])}\n", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, check=False).returncode
        print(f"\n({name}: exit {code}, {time.monotonic() - started:.0f} s)", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
