"""The web page's refusals list: reading a page from the end of a large decision log.

Writes a decision log of ``--records`` records (about 470 bytes each), then, in
alternating rounds, times and measures the peak memory (tracemalloc) of
(a) the baseline a page without a tail reader would need: parsing the whole log
to keep the newest 50 matching records, and (b) ``logtail.read_page`` for the
same page, filtered by a rule that 1 record in 50 carries and unfiltered.
Prints medians and their ratios to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from stockade.proxy.ui.logtail import Filter, read_page

PAGE = 50


def write_log(path: Path, records: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("wb") as fh:
        for i in range(records):
            fh.write(orjson.dumps({
                "seq": i, "time": (start + timedelta(seconds=i)).isoformat(),
                "ecosystem": ("pypi", "npm", "maven")[i % 3], "name": f"pkg-{i}",
                "version": "1.0", "decision": "block",
                "rule": "typosquat" if i % 50 == 0 else "age", "reason": "x" * 120,
                "client": "10.0.0.1", "request_id": "r" * 16, "prev": "0" * 64,
                "hash": "1" * 64}) + b"\n")


def whole_log(path: Path) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for line in fh:
            record = orjson.loads(line)
            if record["rule"] == "typosquat":
                kept.append(record)
                del kept[:-PAGE]
    return kept[::-1]


def measure(fn: Callable[[], object]) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "decisions.jsonl"
        write_log(log, args.records)
        cases: dict[str, Callable[[], object]] = {
            "baseline: parse the whole log": lambda: whole_log(log),
            "tail, rule filter (1 in 50)": lambda: read_page(
                log, Filter(rule="typosquat"), limit=PAGE),
            "tail, no filter": lambda: read_page(log, Filter(), limit=PAGE),
        }
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                results[name].append(measure(fn))
        print(f"decision log: {args.records} records, {log.stat().st_size / 1e6:.0f} MB; "
              f"newest {PAGE} matching, median of {args.rounds} rounds")
        base_s = statistics.median(r[0] for r in results["baseline: parse the whole log"])
        base_b = statistics.median(r[1] for r in results["baseline: parse the whole log"])
        for name, runs in results.items():
            seconds = statistics.median(r[0] for r in runs)
            peak = statistics.median(r[1] for r in runs)
            print(f"  {name:32} {seconds:8.4f} s ({seconds / base_s:6.4f} x)  "
                  f"peak {peak / 1e6:6.2f} MB ({peak / base_b:6.3f} x)")


if __name__ == "__main__":
    main()
