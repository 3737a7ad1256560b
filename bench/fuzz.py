"""Fuzz every parser and renderer for many inputs; print counts, failures and time.

    python -m bench.fuzz [--examples N] [--target NAME ...] [--timeout-s S]

Runs the targets of ``tests/fuzz/targets.py`` (the CI suite runs the same ones a
few hundred times each) with Hypothesis at random, without its example
database, shrinking or deadline. A failing input does not stop the run: each
distinct failure (exception type and the line that raised it) is counted and its
first input printed. An input that takes longer than ``--timeout-s`` is
interrupted and counted as a hang.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz.targets import TARGETS, Target


class HangError(Exception):
    """One input ran past the per-input time limit."""


@dataclass
class Result:
    name: str
    runs: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/stockade/" in f.filename] or frames
    last = inside[-1]
    return f"{type(exc).__name__} at {last.filename.rsplit('/', 2)[-1]}:{last.lineno}"


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise HangError


def run(target: Target, examples: int, timeout_s: float, progress_every: int) -> Result:
    result = Result(target.name)

    def body(value: Any) -> None:
        result.runs += 1
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            target.check(value)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
            key = _where(exc)
            if result.failures[key] == 0:
                result.first[key] = f"{exc!s:.300} <- {value!r:.500}"
            result.failures[key] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - started
        result.slowest_s = max(result.slowest_s, took)
        if progress_every and result.runs % progress_every == 0:
            print(f"  {target.name}: {result.runs:,} inputs, "
                  f"{sum(result.failures.values())} failures", file=sys.stderr, flush=True)

    test = settings(
        max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(given(target.strategy)(body))
    started = time.perf_counter()
    test()
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000,
                        help="inputs per target (default: a million)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="run only these targets (repeatable; default: all)")
    parser.add_argument("--timeout-s", type=float, default=10.0,
                        help="an input running longer counts as a hang")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    names = args.target or sorted(TARGETS)
    print(f"{'target':<16} {'inputs':>10} {'failures':>9} {'time s':>8} {'per s':>8} "
          f"{'slowest ms':>10}")
    total_failures = 0
    for name in names:
        r = run(TARGETS[name], args.examples, args.timeout_s,
                progress_every=max(args.examples // 10, 10_000))
        failures = sum(r.failures.values())
        total_failures += failures
        rate = r.runs / r.seconds if r.seconds else 0.0
        print(f"{name:<16} {r.runs:>10,} {failures:>9,} {r.seconds:>8.1f} {rate:>8.0f} "
              f"{r.slowest_s * 1000:>10.1f}", flush=True)
        for key, count in r.failures.most_common():
            print(f"    {count:>8,} x {key}\n             first: {r.first[key]}", flush=True)
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
