"""Twenty different ~20 MB packuments requested cold at once: memory and other requests.

Generates twenty packuments of about 20 MB each (``bench.serving_tree``'s large one,
renamed) and a small package with a tarball, served by the static upstream; starts
stockade (default settings: one worker per core) over it and warms the small tarball.
Then asks for the twenty packuments at once (``curl``, each on its own connection)
while ``wrk -t1 -c4`` asks for the warm tarball in 3 s slices until the burst ends,
and samples the memory of stockade's whole process tree every 0.2 s:

- PSS (proportional set size, ``/proc/PID/smaps_rollup``): pages shared between the
  supervisor, its workers and their render processes counted once in all;
- RSS summed over the tree, for comparison (counts shared pages once per process).

With ``--base-tree DIR`` (a checkout made with ``git worktree add DIR main``) the same
is measured for that checkout first, in the same run, and both are printed.

The tree's PSS is also given by role (``bench.procs.role``: supervisor, workers,
render processes, multiprocessing's resource trackers) at the tree's peak. With
``--stages``, the work on one document is measured stage by stage instead, each in
a fresh process: what it adds to the process's peak memory (VmHWM over the memory
held before it, the body included) and how long it takes.

    python -m bench.cold_packuments [--count 20] [--workers N] [--base-tree DIR] [--holds]
                                    [--cold-index]
    python -m bench.cold_packuments --stages

With ``--holds``, each server (the base tree's too) times every event-loop
callback of each of its processes and lists those that held the loop over 20 ms,
by the innermost project function on the loop's stack at the time (sampled by a
thread; "?" where none was) and the garbage collector's passes over 10 ms (a pass
inside a callback is counted in both), each with the CPU time the loop's thread
used in it (the rest: waiting for a core). The timing itself costs a little.

With ``--cold-index`` each server (the base tree's too) starts with a new, empty
typosquat index cache folder (``STOCKADE_INDEX_CACHE``): a first start, which builds
the indexes, as a new container's does.

Needs ``wrk`` and ``curl`` on PATH. Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Peak, Proc, roles_memory, start_static, tree_memory, work_folder
from bench.serving import run_wrk, start_stockade
from bench.serving_tree import HUGE, PACKAGE, build
from testbed.net import free_port

_SAMPLE_S = 0.2
_SLICE_S = 3.0
_SETTLE_S = 3.0


@dataclass
class Figures:
    """One server's figures."""

    idle_pss: float = 0.0
    peak_pss: float = 0.0
    peak_rss: float = 0.0
    burst_s: float = 0.0
    statuses: list[str] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)  # per wrk slice
    rps: list[float] = field(default_factory=list)
    errors: int = 0  # warm answers not 2xx/3xx
    # (processes, PSS MiB) by role (bench.procs.role): idle, at the tree's peak, and
    # each role's own peak
    idle_roles: dict[str, tuple[int, float]] = field(default_factory=dict)
    after_pss: float = 0.0  # a few seconds after the last answer: what stays held
    at_peak: dict[str, tuple[int, float]] = field(default_factory=dict)
    role_peaks: dict[str, tuple[int, float]] = field(default_factory=dict)


def names(count: int) -> list[str]:
    return [f"{HUGE}-{n}" for n in range(count)]


def generate(root: Path, upstream: str, count: int) -> None:
    """The tree, with ``count`` renamed copies of the large packument."""
    build(root, upstream, huge=True)
    huge = (root / "npm" / f"{HUGE}.json").read_bytes()
    for name in names(count):
        (root / "npm" / f"{name}.json").write_bytes(
            huge.replace(HUGE.encode(), name.encode()))


def measure(proc: Proc, count: int) -> Figures:
    figures = Figures()
    tarball = f"/npm/{PACKAGE}/-/{PACKAGE}-1.0.0.tgz"
    for _ in range(3):
        subprocess.run(["curl", "-sf", "-o", "/dev/null", proc.url(tarball)], check=True,
                       timeout=120)
    figures.idle_pss = tree_memory(proc.pid)[1]
    figures.idle_roles = roles_memory(proc.pid)
    with Peak(proc.pid, every_s=_SAMPLE_S, by_role=True) as peak:
        started = time.perf_counter()
        curls = [subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "600",
             proc.url(f"/npm/{name}")], stdout=subprocess.PIPE, text=True)
            for name in names(count)]
        while any(c.poll() is None for c in curls):
            rps, p99, errors = run_wrk(proc.url(tarball), _SLICE_S, threads=1,
                                         connections=4)
            figures.errors += errors
            figures.rps.append(rps)
            figures.p99_ms.append(p99)
        figures.burst_s = time.perf_counter() - started
        figures.statuses = [c.communicate()[0] for c in curls]
    figures.peak_pss, figures.peak_rss = peak.pss, peak.rss
    figures.at_peak, figures.role_peaks = peak.at_peak, peak.role_peaks
    time.sleep(_SETTLE_S)
    figures.after_pss = tree_memory(proc.pid)[1]
    return figures


# Loaded first by each server process (``sitecustomize``): times loop callbacks.
_HOLDS_SITE = """
import asyncio.events, gc, os, sys, threading, time, traceback
_run0 = asyncio.events.Handle._run
_state = {"pid": None, "cur": None, "gc": (0.0, 0.0)}
_OUT = os.environ["STOCKADE_BENCH_HOLDS"]
def _write(line):
    with open(f"{_OUT}.{os.getpid()}", "a") as out:
        out.write(line + "\\n")
def _watch(main_id):
    while True:
        time.sleep(0.005)
        cur = _state["cur"]
        if cur is None or cur[2] is not None or time.perf_counter() - cur[0] < 0.015:
            continue
        frame = sys._current_frames().get(main_id)
        if frame is not None:
            cur[2] = [f"{os.path.basename(f.filename)}:{f.name}"
                      for f in traceback.extract_stack(frame) if "/stockade/" in f.filename]
def _run(self):
    if _state["pid"] != os.getpid():
        _state["pid"] = os.getpid()
        threading.Thread(target=_watch, args=(threading.get_ident(),), daemon=True).start()
    cur = _state["cur"] = [time.perf_counter(), self, None, time.thread_time()]
    try:
        return _run0(self)
    finally:
        _state["cur"] = None
        took = time.perf_counter() - cur[0]
        if took > 0.02:
            cpu = time.thread_time() - cur[3]
            _write(f"hold {took * 1000:.0f} {cpu * 1000:.0f} {(cur[2] or ['?'])[-1]}")
def _gc(phase, info):
    if phase == "start":
        _state["gc"] = (time.perf_counter(), time.thread_time())
    elif (took := time.perf_counter() - _state["gc"][0]) > 0.01:
        cpu = time.thread_time() - _state["gc"][1]
        _write(f"hold {took * 1000:.0f} {cpu * 1000:.0f} gc-generation-{info['generation']}")
if "--multiprocessing-fork" not in sys.argv:  # not in render processes: no loop there
    asyncio.events.Handle._run = _run
    gc.callbacks.append(_gc)
"""


def holds_summary(folder: Path) -> str:
    """The loop holds the processes wrote to ``folder``, by function: count, longest
    (wall-clock), the most CPU time the loop's thread used in one, and how many used
    over 20 ms of it (a hold that used little was mostly the thread waiting for a
    core: on a busy machine, holds of every kind grow alike)."""
    found: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for path in folder.glob("holds.*"):
        for line in path.read_text().splitlines():
            _, ms, cpu, where = line.split(" ", 3)
            found[where].append((int(ms), int(cpu)))
    ranked = sorted(found.items(), key=lambda kv: -sum(ms for ms, _ in kv[1]))
    return "; ".join(
        f"{where} {len(held)}x max {max(ms for ms, _ in held)} ms (CPU max "
        f"{max(cpu for _, cpu in held)} ms, {sum(cpu > 20 for _, cpu in held)}x over 20)"
        for where, held in ranked[:12])


def run_one(label: str, work: Path, upstream: str, tree: Path | None, workers: int | None,
            count: int, *, holds: bool = False, cold_index: bool = False) -> Figures:
    folder = work / label
    folder.mkdir()
    saved = dict(os.environ)
    if cold_index:  # restored with the rest of the environment once it started
        os.environ["STOCKADE_INDEX_CACHE"] = str(folder / "index")
    placed = None  # the site module put in the base tree, removed once it stopped
    if holds:
        site = folder / "site"
        if tree is not None:  # its server's path is the tree alone (``bench.serving``)
            site = tree
            if (site / "sitecustomize.py").exists():
                sys.exit(f"{site / 'sitecustomize.py'} exists: cannot time that tree")
        site.mkdir(exist_ok=True)
        placed = site / "sitecustomize.py"
        placed.write_text(_HOLDS_SITE)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(site), saved.get("PYTHONPATH", "")) if p)
        os.environ["STOCKADE_BENCH_HOLDS"] = str(folder / "holds")
    try:
        try:
            proc = start_stockade(upstream, folder, tree, workers)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            figures = measure(proc, count)
        finally:
            proc.stop()
    finally:
        if placed is not None and tree is not None:
            placed.unlink()
    if holds:
        print(f"{label}: loop held over 20 ms (by function): {holds_summary(folder)}",
              flush=True)
    ok = figures.statuses.count("200")
    print(f"{label}: {ok}/{count} packuments answered 200 in {figures.burst_s:.1f} s; "
          f"tree PSS idle {figures.idle_pss:.0f} MiB, peak {figures.peak_pss:.0f} MiB, "
          f"{_SETTLE_S:.0f} s after {figures.after_pss:.0f} MiB "
          f"(RSS summed: peak {figures.peak_rss:.0f} MiB); warm tarball meanwhile: "
          f"p99 worst slice {max(figures.p99_ms):.1f} ms, median slice "
          f"{statistics.median(figures.p99_ms):.1f} ms, "
          f"{statistics.median(figures.rps):,.0f} req/s, {figures.errors} not 2xx/3xx",
          flush=True)
    print(f"{label}: PSS by role (processes x MiB): {_roles(figures)}", flush=True)
    return figures


def _roles(figures: Figures) -> str:
    parts = []
    for name in sorted({*figures.idle_roles, *figures.at_peak, *figures.role_peaks}):
        idle = figures.idle_roles.get(name, (0, 0.0))
        at = figures.at_peak.get(name, (0, 0.0))
        own = figures.role_peaks.get(name, (0, 0.0))
        parts.append(f"{name} idle {idle[0]}x{idle[1]:.0f}, at tree peak {at[0]}x{at[1]:.0f}, "
                     f"own peak {own[0]}x{own[1]:.0f}")
    return "; ".join(parts)


# What each stage does to one document, as the serving and render processes do it.
STAGES = {
    "read (spool: the body in memory)": "bytearray(body)",
    "pickle to a render process": "pickle.dumps(((body,), {}))",
    "unpickle in the render process": "pickle.loads(pickled)",
    "index (parse, write check, facts)": "docs.index(body, NAME, upstream='u', internal=False)",
    "index back in the worker (unpickle)": "pickle.loads(index_pickled)",
    "render full": "docs.render_body(body, NAME, abbreviated=False, hidden=frozenset(), "
                   "base='http://h/npm/', hosts=frozenset({'127.0.0.1'}))",
    "render abbreviated": "docs.render_body(body, NAME, abbreviated=True, hidden=frozenset(), "
                          "base='http://h/npm/', hosts=frozenset({'127.0.0.1'}))",
    "gzip (level 6)": "gzip.compress(body, compresslevel=6, mtime=0)",
    "rebase (bytes.replace)": "body.replace(b'http://127.0.0.1:1/', b'http://127.0.0.1:2/')",
}
_STAGE_SETUP = """
import gzip, json, pickle, sys, time
from pathlib import Path
from stockade.proxy.ecosystems import npm_documents as docs
NAME = sys.argv[2]
body = Path(sys.argv[1]).read_bytes()
# what a stage starts from, made only where it needs it (it leaves memory behind)
if 'index_pickled' in sys.argv[3]:
    index_pickled = pickle.dumps(docs.index(body, NAME, upstream='u', internal=False))
elif 'pickled' in sys.argv[3]:
    pickled = pickle.dumps(((body,), {}))
def status(key):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1]) / 1024
    return 0.0
Path('/proc/self/clear_refs').write_text('5')  # the peak so far: forgotten
before = status('VmRSS')
started = time.perf_counter()
out = eval(sys.argv[3])
took = time.perf_counter() - started
print(json.dumps([status('VmHWM') - before, took * 1000]))
"""


def stages(path: Path, name: str) -> None:
    """Print each stage's added peak memory and time for the document at ``path``."""
    print(f"one {path.stat().st_size / 2**20:.1f} MiB packument, stage by stage "
          "(each in a fresh process):")
    for label, code in STAGES.items():
        run = subprocess.run([sys.executable, "-c", _STAGE_SETUP, str(path), name, code],
                             capture_output=True, text=True, check=True, timeout=300)
        peak, took = json.loads(run.stdout)
        print(f"  {label}: +{peak:.0f} MiB peak, {took:.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20, help="packuments asked at once")
    parser.add_argument("--workers", type=int, help="server.workers (default: the default)")
    parser.add_argument("--base-tree", type=Path, help="measure this checkout first")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    parser.add_argument("--holds", action="store_true",
                        help="list what held this checkout's event loops over 20 ms")
    parser.add_argument("--cold-index", action="store_true",
                        help="start each server with a new, empty index cache folder")
    parser.add_argument("--stages", action="store_true",
                        help="measure one document's stages instead (no server)")
    args = parser.parse_args()
    if args.stages:
        with work_folder("stockade-stages-", keep=args.keep) as work:
            build(work, "http://127.0.0.1:1/", huge=True)
            stages(work / "npm" / f"{HUGE}.json", HUGE)
        return
    missing = [tool for tool in ("wrk", "curl") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"{' and '.join(missing)} not found: apt-get install wrk curl")
    with work_folder("stockade-cold-", keep=args.keep) as work:
        port = free_port()
        generate(work / "upstream", f"http://127.0.0.1:{port}/", args.count)
        static = start_static(work / "upstream", work / "static.log", port=port)
        try:
            results = {}
            if args.base_tree is not None:
                results["base"] = run_one("base", work, static.url("/"),
                                          args.base_tree.resolve(), args.workers, args.count,
                                          holds=args.holds, cold_index=args.cold_index)
            results["this"] = run_one("this", work, static.url("/"), None, args.workers,
                                      args.count, holds=args.holds,
                                      cold_index=args.cold_index)
            if "base" in results:
                base, this = results["base"], results["this"]
                print(f"this/base: peak PSS {this.peak_pss / base.peak_pss:.2f}x, worst p99 "
                      f"{max(this.p99_ms) / max(base.p99_ms):.2f}x, burst time "
                      f"{this.burst_s / base.burst_s:.2f}x")
        finally:
            static.stop()


if __name__ == "__main__":
    main()
