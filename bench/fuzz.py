"""Fuzz every parser and renderer for many inputs; print counts, failures and time.

    python -m bench.fuzz [--examples N] [--seeds N] [--target NAME ...] [--timeout-s S]

Runs the targets of ``testbed/fuzz/targets.py`` (the CI suite runs the same ones a
few hundred times each). Hypothesis draws ``--seeds`` inputs per target at
random, without its example database, shrinking or deadline; the rest of the
``--examples`` are those seeds mutated (bytes and text: characters inserted,
deleted, replaced, repeated, spliced from another seed), which is one to two
orders of magnitude faster than drawing each input, so a million per target
takes minutes rather than hours. Targets whose inputs are objects (the
round-trip ones: a project page, a metadata document) bring their own
``mutate``, which splices and edits seeds into new valid objects (see
``testbed/fuzz/mutations.py``). ``--seeds`` equal to ``--examples`` draws every
input.

A failing input does not stop the run: each distinct failure (exception type
and the line that raised it) is counted and its first input printed, at once
and again in the summary. An input
that takes longer than ``--timeout-s`` is interrupted and counted as a hang.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from testbed.fuzz.targets import TARGETS, Target


class HangError(Exception):
    """One input ran past the per-input time limit."""


@dataclass
class Result:
    name: str
    runs: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    slowest: str = ""
    failures: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/stockade/" in f.filename] or frames
    last = inside[-1]
    return f"{type(exc).__name__} at {last.filename.rsplit('/', 2)[-1]}:{last.lineno}"


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise HangError


_INTERESTING = [b"\n", b"\x00", b"\\", b"/", b"%2f", b"..", b"[", b"{", b"<", b"&", b'"',
                b"\xff", b"\xc3", b":", b"#", b"=", b"-", "\u0130".encode()]


def _mutate_bytes(data: bytes, other: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(data))
        op = rng.randrange(6)
        if op == 0:
            data = data[:pos] + rng.choice(_INTERESTING) + data[pos:]
        elif op == 1:
            data = data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1:]
        elif op == 2:
            data = data[:pos] + data[pos + rng.randint(1, 8):]
        elif op == 3:  # repeat a slice: deeper nesting, longer names
            end = min(len(data), pos + rng.randint(1, 8))
            data = data[:pos] + data[pos:end] * rng.randint(2, 300) + data[end:]
        elif op == 4 and other:
            start = rng.randrange(len(other))
            data = data[:pos] + other[start:start + rng.randint(1, 64)] + data[pos:]
        else:
            data = data[:pos]
    return data


def mutate(value: Any, other: Any, rng: random.Random) -> Any:
    """``value`` with its bytes or text changed a little (other types as they are)."""
    if isinstance(value, bytes):
        return _mutate_bytes(value, other if isinstance(other, bytes) else b"", rng)
    if isinstance(value, str):
        raw = _mutate_bytes(value.encode("utf-8", "surrogatepass"),
                            other.encode("utf-8", "surrogatepass") if isinstance(other, str)
                            else b"", rng)
        return raw.decode("utf-8", "replace")
    if isinstance(value, tuple) and value:
        i = rng.randrange(len(value))
        peer = other[i] if isinstance(other, tuple) and len(other) == len(value) else None
        return (*value[:i], mutate(value[i], peer, rng), *value[i + 1:])
    return value


def _mutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return any(_mutable(v) for v in value)
    return isinstance(value, bytes | str)


def run(target: Target, examples: int, seeds: int, timeout_s: float, progress_every: int,
        rng: random.Random) -> Result:
    result = Result(target.name)
    drawn: list[Any] = []

    def body(value: Any) -> None:
        if len(drawn) < 10_000:
            drawn.append(value)
        result.runs += 1
        started = time.perf_counter()
        # The first input builds what later ones reuse (the typosquat name index
        # takes seconds of CPU once per process): it runs without the limit.
        signal.setitimer(signal.ITIMER_REAL, timeout_s if result.runs > 1 else 0)
        try:
            target.check(value)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
            key = _where(exc)
            if result.failures[key] == 0:
                result.first[key] = f"{exc!s:.300} <- {value!r:.500}"
                # at once too: a long run stopped early keeps what it found
                print(f"  {target.name}: new failure {key}: {result.first[key]}",
                      file=sys.stderr, flush=True)
            result.failures[key] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - started
        if took > result.slowest_s:
            result.slowest_s, result.slowest = took, f"{value!r:.300}"
        if progress_every and result.runs % progress_every == 0:
            print(f"  {target.name}: {result.runs:,} inputs, "
                  f"{sum(result.failures.values())} failures", file=sys.stderr, flush=True)

    test = settings(
        max_examples=min(seeds, examples), database=None, deadline=None,
        phases=[Phase.generate], suppress_health_check=list(HealthCheck),
    )(given(target.strategy)(body))
    started = time.perf_counter()
    test()
    mutator = target.mutate or mutate
    if drawn and target.mutate is None and not _mutable(drawn[0]):
        # Objects without a mutator of their own have no bytes to change: draw them all.
        settings(max_examples=max(examples - result.runs, 1), database=None, deadline=None,
                 phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                 )(given(target.strategy)(body))()
    while drawn and result.runs < examples:
        body(mutator(rng.choice(drawn), rng.choice(drawn), rng))
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000,
                        help="inputs per target (default: a million)")
    parser.add_argument("--seeds", type=int, default=5_000,
                        help="inputs per target drawn by Hypothesis; the rest are mutations")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the mutations")
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
        r = run(TARGETS[name], args.examples, args.seeds, args.timeout_s,
                progress_every=max(args.examples // 10, 10_000), rng=random.Random(args.seed))
        failures = sum(r.failures.values())
        total_failures += failures
        rate = r.runs / r.seconds if r.seconds else 0.0
        print(f"{name:<16} {r.runs:>10,} {failures:>9,} {r.seconds:>8.1f} {rate:>8.0f} "
              f"{r.slowest_s * 1000:>10.1f}", flush=True)
        if r.slowest_s > 1.0:
            print(f"    slowest input: {r.slowest}", flush=True)
        for key, count in r.failures.most_common():
            print(f"    {count:>8,} x {key}\n             first: {r.first[key]}", flush=True)
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
