"""Warm serving of the 20 MB packument while it is revalidated: issue 20's stale round.

Starts the static upstream over ``bench.serving_tree``'s tree and stockade (default
settings but ``npm.cache.metadata_ttl_s``, ``--ttl``) over it, warms the 20 MB
packument (4,000 versions) in its four forms, then, for each form, lets the document
go stale (no request for ``--ttl`` seconds and one more) and drives ``wrk -t2 -c64``
at it for ``--duration`` seconds: the window opens on a stale document, and with a
duration longer than the TTL it goes stale again inside it. The upstream answers each
revalidation 304 (aiohttp's file response honours ``If-None-Match``); with
``--change`` the upstream file gains a byte before each window, so each revalidation
brings a changed document (parsed and rendered again).

Per window: req/s, p99, CPU time per request (whole process tree), the most RSS and
PSS of the tree, and how many times the upstream was asked for the document.

With ``--base-tree DIR`` (a checkout made with ``git worktree add DIR COMMIT``) that
checkout's stockade is measured too, its window just before this one's for each form
in each round, so the machine's drift touches both alike; ratios are this/base.

    python -m bench.refresh [--ttl S] [--duration S] [--rounds N] [--change]
                            [--base-tree DIR] [--workers N] [--keep]

Needs ``wrk`` on PATH. Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Peak, Proc, start_static, work_folder
from bench.serving import _LATENCY_UNITS, _check_tools, _warm, start_stockade, tree_cpu_s
from bench.serving_tree import HUGE, Case, build
from testbed.net import free_port


@dataclass
class Window:
    """What one contender's windows on one form measured."""

    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    pss_mib: list[float] = field(default_factory=list)
    fetches: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # not 2xx/3xx, or no answer in 2 s


def _fetched(static: Proc) -> int:
    """How many times the upstream was asked for the huge packument."""
    url = static.url(f"/_count?suffix=/npm/{HUGE}")
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
        body: bytes = resp.read()
    return int(body.split(b":")[1].strip(b" }\n"))


def _wrk(url: str, duration: float, headers: tuple[tuple[str, str], ...]
         ) -> tuple[float, float, int]:
    """(req/s, p99 in ms, requests failed) of ``wrk -t2 -c64``; failed counts answers
    not 2xx/3xx and requests wrk gave up on (its 2 s timeout), which its latency
    figures leave out: a stalled server shows there."""
    flags = [flag for name, value in headers for flag in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{duration:g}s", "--latency", *flags, url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    latency = float(p99.group(1)) * _LATENCY_UNITS[p99.group(2)] if p99 else 0.0
    failed = sum(int(m) for m in re.findall(
        r"(?:Non-2xx or 3xx responses: |timeout )(\d+)", out))
    return float(rps.group(1)), latency, failed


def _window(proc: Proc, static: Proc, case: Case, duration: float) -> tuple[float, ...]:
    fetched, cpu = _fetched(static), tree_cpu_s([proc.pid])
    with Peak(proc.pid, every_s=0.2) as peak:
        rps, p99, failed = _wrk(proc.url(case.stockade_path), duration, case.headers)
    cpu = tree_cpu_s([proc.pid]) - cpu
    return (rps, p99, 1e6 * cpu / max(rps * duration, 1), peak.rss, peak.pss,
            _fetched(static) - fetched, failed)


def _touch(root: Path) -> None:
    """Change the upstream's document by one byte (JSON allows trailing space)."""
    with (root / "npm" / f"{HUGE}.json").open("ab") as out:
        out.write(b" ")


def run(args: argparse.Namespace, work: Path) -> None:
    root = work / "upstream"
    upstream_port = free_port()
    cases = [c for c in build(root, f"http://127.0.0.1:{upstream_port}/", huge=True)
             if c.label.startswith("20 MB")]
    static = start_static(root, work / "static.log", port=upstream_port)
    trees: dict[str, Path | None] = {}
    if args.base_tree is not None:
        trees["base"] = args.base_tree
    trees["this"] = None
    servers: dict[str, Proc] = {}
    try:
        for name, tree in trees.items():
            servers[name] = start_stockade(static.url("/"), work, tree, args.workers,
                                           name=name,
                                           npm_cache={"metadata_ttl_s": args.ttl})
        for case in cases:
            for proc in servers.values():
                _warm(proc, case.stockade_path, headers=case.headers)
        results = {(n, c.label): Window() for n in servers for c in cases}
        for round_no in range(args.rounds):
            for case in cases:
                for name, proc in servers.items():
                    if args.change:
                        _touch(root)
                    time.sleep(args.ttl + 1)  # stale when the window opens
                    got = _window(proc, static, case, args.duration)
                    w = results[name, case.label]
                    for values, value in zip(
                            (w.rps, w.p99_ms, w.cpu_us, w.rss_mib, w.pss_mib, w.fetches,
                             w.failed), got, strict=True):
                        values.append(value)  # type: ignore[attr-defined]
                    print(f"round {round_no + 1}: {case.label:<24} {name:<5} "
                          f"{got[0]:>8,.1f} req/s  p99 {got[1]:8.1f} ms  "
                          f"{got[2]:>9,.0f} us CPU/req  RSS {got[3]:5.0f} MiB  "
                          f"fetched {got[5]}  failed {got[6]}", flush=True)
        _table(cases, results, list(servers), args)
    finally:
        for proc in servers.values():
            proc.stop()
        static.stop()


def _table(cases: list[Case], results: dict[tuple[str, str], Window], names: list[str],
           args: argparse.Namespace) -> None:
    print(f"\n20 MB packument going stale (metadata_ttl_s {args.ttl:g}, upstream "
          f"{'changed' if args.change else '304'}), wrk -t2 -c64, {args.duration:g} s x "
          f"{args.rounds}, medians")
    print("| form                     | tree  |    req/s |  p99 ms | CPU us/req | "
          "peak RSS MiB | peak PSS MiB | fetched | failed |")
    print("| ------------------------ | ----- | -------- | ------- | ---------- | "
          "------------ | ------------ | ------- | ------ |")
    med = statistics.median
    for case in cases:
        for name in names:
            w = results[name, case.label]
            print(f"| {case.label:<24} | {name:<5} | {med(w.rps):>8,.1f} | "
                  f"{med(w.p99_ms):>7,.0f} | {med(w.cpu_us):>10,.0f} | "
                  f"{max(w.rss_mib):>12,.0f} | {max(w.pss_mib):>12,.0f} | "
                  f"{sum(w.fetches):>7} | {sum(w.failed):>6} |")
    if "base" in names:
        print("\nthis/base (median of the rounds' ratios): req/s; CPU per request")
        for case in cases:
            this, base = results["this", case.label], results["base", case.label]
            rps = med(t / max(b, 0.1) for t, b in zip(this.rps, base.rps, strict=True))
            cpu = med(t / max(b, 1) for t, b in zip(this.cpu_us, base.cpu_us, strict=True))
            print(f"{case.label:<24} req/s {rps:,.2f}x  CPU/req {cpu:,.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttl", type=float, default=4.0, help="npm metadata_ttl_s")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--change", action="store_true",
                        help="change the upstream document before each window")
    parser.add_argument("--base-tree", type=Path, help="also measure this checkout")
    parser.add_argument("--workers", type=int, help="server.workers (default: the default)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    args = parser.parse_args()
    if args.base_tree is not None:
        args.base_tree = args.base_tree.resolve()
    _check_tools()
    with work_folder("stockade-refresh-", keep=args.keep) as work:
        run(args, work)


if __name__ == "__main__":
    main()
