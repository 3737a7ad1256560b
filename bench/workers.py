"""Worker processes side by side: start time, memory per process, req/s, single-flight.

Starts the static upstream over ``bench.serving_tree``'s tree and one stockade per
``--workers`` value (default settings otherwise), then prints, for each:

- seconds from the process start to the first answered ``/healthz``;
- RSS and PSS (proportional: shared pages split among their users, from
  ``/proc/PID/smaps_rollup``) of the supervisor and every worker: idle after warming,
  halfway through the first round of warm load, and after the cold bursts;
- req/s of ``wrk -t2 -c64`` on a warm small wheel, rounds alternating the servers
  so the machine's drift touches each alike, and the ratio to the first server;
- a varied warm load (``--varied N``, 0: none): ``wrk`` asking for N different ~22 KB
  wheels of one project (about 33 MB for the default 1,500, more than a worker's
  default memory for blobs), at random, all fetched once before: req/s, and the RSS
  and PSS of each process halfway through and after it;
- upstream requests of any kind caused by 50 concurrent cold requests for one
  artifact, read from the upstream's own counter, and the time until all 50 were
  answered: a wheel whose page is cold too; a wheel whose page was fetched just
  before (as pip asks: the page, then the file; the page's request not counted);
  and two Maven jars in turn, sent with ``X-Checksum-*`` headers as Central sends
  them (``--checksum-headers``; empty: none, and the first jar finds out which
  checksum files the origin publishes); then the same 50 again, warm: what the
  clients and a warm answer take of the time, the floor a cold burst cannot beat.
  Each with the CPU time stockade's processes spent on it (steadier than the time
  on a busy machine; in clock ticks of 10 ms).

    python -m bench.workers [--workers 1,2] [--duration S] [--rounds N]
                            [--checksum-headers sha1,md5] [--bursts-only] [--varied N]
                            [--stockade-tree DIR]

Needs ``wrk`` on PATH (but for ``--bursts-only``). Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import aiohttp
import yaml

from bench.procs import Proc, memory, start_static, tree_pids, work_folder
from bench.serving import run_wrk, tree_cpu_s, wrk
from bench.serving_tree import Case, build
from testbed.net import free_port

PAGED = "stockade-bench-paged"  # the wheel whose page is fetched before the burst
MANY = "stockade-bench-many"  # the project of the varied warm load's wheels
_OLD = 1_580_000_000  # 2020: older than any cooldown


def _paged_wheel(root: Path) -> str:
    """Add a project with one ~1 MB wheel to the upstream tree; its stockade path."""
    dist = PAGED.replace("-", "_")
    filename = f"{dist}-1.0.0-py3-none-any.whl"
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{dist}/data.bin", random.Random(30).randbytes(1_000_000))
    data = raw.getvalue()
    (root / "files" / filename).write_bytes(data)
    page = root / "simple" / PAGED / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    page.write_text(f'<!DOCTYPE html>\n<html><body>\n<a href="../../files/{filename}'
                    f'#sha256={digest}">{filename}</a><br/>\n</body></html>\n')
    for path in (root / "files" / filename, page):
        os.utime(path, (_OLD, _OLD))
    return f"/pypi/files/{PAGED}/{filename}"


def _many_wheels(root: Path, count: int) -> list[str]:
    """Add a project with ``count`` wheels of ~22 KB (one per version) to the upstream
    tree; their stockade paths."""
    dist = MANY.replace("-", "_")
    rng = random.Random(31)
    links, paths = [], []
    for n in range(count):
        filename = f"{dist}-1.0.{n}-py3-none-any.whl"
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{dist}/data.bin", rng.randbytes(22_000))
        data = raw.getvalue()
        path = root / "files" / filename
        path.write_bytes(data)
        os.utime(path, (_OLD, _OLD))
        links.append(f'<a href="../../files/{filename}#sha256='
                     f'{hashlib.sha256(data).hexdigest()}">{filename}</a><br/>')
        paths.append(f"/pypi/files/{MANY}/{filename}")
    page = root / "simple" / MANY / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links)
                    + "\n</body></html>\n")
    os.utime(page, (_OLD, _OLD))
    return paths


def start(upstream: str, work: Path, workers: int,
          tree: Path | None = None, report: Path | None = None) -> tuple[Proc, float]:
    """stockade with ``server.workers`` (of the checkout ``tree``, else this one); the
    seconds until it answered ``/healthz``. With ``report`` (one worker), run through
    ``bench/memdetail.py``: each SIGUSR1 writes what it holds there."""
    port = free_port()
    folder = work / f"w{workers}"
    folder.mkdir()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "workers": workers},
        "storage": {"path": str(folder / "data")},
        "pypi": {"upstreams": [{"name": "static", "url": f"{upstream}simple/"}]},
        "npm": {"upstreams": [{"name": "static", "url": f"{upstream}npm/"}]},
        "maven": {"upstreams": [{"name": "static", "url": f"{upstream}maven2/"}]},
    }
    path = folder / "stockade.yaml"
    path.write_text(yaml.safe_dump(config))
    log = folder / "stockade.log"
    started = time.perf_counter()
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    command = [sys.executable, "-m", "stockade.proxy.cli"]
    if report is not None:
        command = [sys.executable, str(Path(__file__).with_name("memdetail.py")), str(report)]
    proc = subprocess.Popen(
        [*command, "serve", "--config", str(path)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tree or Path.cwd())
    served = Proc(proc, port)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"stockade exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(served.url("/healthz"), timeout=5):  # noqa: S310
                return served, time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.01)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
        return bytes(resp.read())


async def _burst(url: str, count: int) -> list[int]:
    async def one() -> int:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session, \
                session.get(url) as resp:
            await resp.read()
            return resp.status
    return await asyncio.gather(*(one() for _ in range(count)))


def upstream_count(static: Proc) -> int:
    return int(json.loads(_get(static.url("/_count")))["count"])


def _memory(servers: dict[int, Proc], when: str) -> None:
    """RSS and PSS of each server's processes (supervisor first, then its workers)."""
    for workers, proc in servers.items():
        for n, pid in enumerate(tree_pids(proc.pid)):
            rss, pss = memory(pid)
            role = "supervisor" if n == 0 and workers > 1 else "worker"
            print(f"workers={workers}: {role} {pid}, {when}: RSS {rss:.0f} MiB, "
                  f"PSS {pss:.0f} MiB", flush=True)


def run(args: argparse.Namespace, work: Path) -> None:
    root = work / "upstream"
    upstream_port = free_port()
    cases = {c.label: c for c in build(root, f"http://127.0.0.1:{upstream_port}/")}
    paged = _paged_wheel(root)
    many = _many_wheels(root, args.varied) if not args.bursts_only else []
    static = start_static(root, work / "static.log", port=upstream_port,
                          checksum_headers=args.checksum_headers)
    servers: dict[int, Proc] = {}
    try:
        for workers in args.workers:
            report = work / f"memory-{workers}.json" if args.memory_detail else None
            proc, seconds = start(static.url("/"), work, workers, args.stockade_tree, report)
            servers[workers] = proc
            print(f"workers={workers}: first /healthz answered {seconds:.2f} s after start")
        if not args.bursts_only:
            _warm(args, servers, cases["22 KB wheel"].stockade_path, work)
            if many:
                _varied(args, servers, many, work)
        _bursts(args, servers, static, cases, paged)
    finally:
        for proc in servers.values():
            proc.stop()
        static.stop()


def _warm(args: argparse.Namespace, servers: dict[int, Proc], small: str,
          work: Path) -> None:
    """Memory idle and under load, and req/s of the warm small wheel."""
    for proc in servers.values():
        for _ in range(3):
            _get(proc.url(small))
    time.sleep(1)
    _memory(servers, "idle")
    if args.memory_detail:
        _detail(servers, work, "idle")
    rps: dict[int, list[float]] = {w: [] for w in servers}
    for round_no in range(args.rounds):
        for workers, proc in servers.items():
            # memory read halfway through the first round: under load
            sample = threading.Timer(args.duration / 2, _memory,
                                     ({workers: proc}, "under the warm load"))
            if round_no == 0:
                sample.start()
            value, p99 = wrk(proc.url(small), args.duration)
            if round_no == 0:
                sample.join()
            rps[workers].append(value)
            print(f"round {round_no + 1}: workers={workers} {value:,.0f} req/s "
                  f"p99 {p99:.1f} ms", flush=True)
    base = args.workers[0]
    for workers in servers:
        ratio = statistics.median(a / b for a, b in zip(rps[workers], rps[base],
                                                        strict=True))
        print(f"22 KB wheel, warm: workers={workers} median "
              f"{statistics.median(rps[workers]):,.0f} req/s, {ratio:.2f}x workers={base}")


async def _fetch_all(urls: list[str]) -> None:
    """GET every one of ``urls`` (16 at a time), each answered 200."""
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:
        async def one(url: str) -> None:
            async with limit, session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status}")
        await asyncio.gather(*(one(url) for url in urls))


def _varied(args: argparse.Namespace, servers: dict[int, Proc], paths: list[str],
            work: Path) -> None:
    """Memory and req/s under a warm load over many different small wheels."""
    listing = work / "many.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = work / "many.lua"
    script.write_text(f"""
local paths = {{}}
for line in io.lines("{listing}") do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
""")
    for proc in servers.values():
        asyncio.run(_fetch_all([proc.url(p) for p in paths]))
    label = f"{len(paths):,} different ~22 KB wheels"
    for workers, proc in servers.items():
        sample = threading.Timer(args.duration / 2, _memory,
                                 ({workers: proc}, f"under the varied load ({label})"))
        sample.start()
        cpu = tree_cpu_s([proc.pid])
        value, p99, errors = run_wrk(proc.url("/"), args.duration, script=script)
        cpu = tree_cpu_s([proc.pid]) - cpu
        sample.join()
        if errors:
            raise RuntimeError(f"varied load: {errors} answers were not 2xx/3xx")
        print(f"varied warm load, {label} at random: workers={workers} {value:,.0f} "
              f"req/s p99 {p99:.1f} ms, stockade CPU "
              f"{cpu * 1e6 / max(1.0, value * args.duration):.0f} us per request",
              flush=True)
    time.sleep(1)
    _memory(servers, "after the varied load")
    if args.memory_detail:
        _detail(servers, work, "after the varied load")


def _detail(servers: dict[int, Proc], work: Path, when: str) -> None:
    """Each server's report of what it holds (``bench/memdetail.py``), printed."""
    for workers, proc in servers.items():
        report = work / f"memory-{workers}.json"
        report.unlink(missing_ok=True)
        os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not report.exists():
            print(f"workers={workers}: no memory report {when}")
            continue
        detail = json.loads(report.read_text())
        print(f"workers={workers}: what the worker holds {when}:")
        print(json.dumps(detail, indent=1))


def _bursts(args: argparse.Namespace, servers: dict[int, Proc], static: Proc,
            cases: dict[str, Case], paged: str) -> None:
    """Upstream requests and time of 50 concurrent cold requests, per artifact."""
    # without checksum headers, the second jar shows what the first taught: no
    # probe for a checksum the origin does not publish
    headers = ",".join(args.checksum_headers) or "none"
    bursts = (("~1 MB wheel", cases["~1 MB wheel"].stockade_path, None),
              ("~1 MB wheel after its page", paged, f"/pypi/simple/{PAGED}/"),
              (f"26 KB Maven jar (checksum headers: {headers})",
               cases["26 KB Maven jar"].stockade_path, None),
              (f"~1 MB Maven jar (checksum headers: {headers})",
               cases["~1 MB Maven jar"].stockade_path, None))
    for label, path, first in bursts:
        for workers, proc in servers.items():
            if first is not None:
                _get(proc.url(first))
            before = upstream_count(static)
            pids = [proc.pid]
            cpu, started = tree_cpu_s(pids), time.monotonic()
            statuses = asyncio.run(_burst(proc.url(path), 50))
            took, cpu = time.monotonic() - started, tree_cpu_s(pids) - cpu
            print(f"50 cold requests at once, {label}, workers={workers}: "
                  f"{statuses.count(200)} answered 200 in {took:.2f} s (the clients' "
                  f"connections included), {upstream_count(static) - before} upstream "
                  f"requests, stockade CPU {cpu * 1000:.0f} ms")
            cpu, started = tree_cpu_s(pids), time.monotonic()
            statuses = asyncio.run(_burst(proc.url(path), 50))
            print(f"  the same 50 again, warm: {statuses.count(200)} answered 200 in "
                  f"{time.monotonic() - started:.2f} s, stockade CPU "
                  f"{(tree_cpu_s(pids) - cpu) * 1000:.0f} ms", flush=True)
    if not args.bursts_only:
        _memory(servers, "after the cold bursts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2",
                        type=lambda v: [int(x) for x in v.split(",")],
                        help="comma-separated worker counts to compare (first: the base)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    parser.add_argument("--bursts-only", action="store_true",
                        help="start-up and the cold bursts only: no warm rounds (nor wrk), "
                        "no memory samples")
    parser.add_argument("--stockade-tree", type=Path, default=None,
                        help="run the stockade of another checkout (for a before/after)")
    parser.add_argument("--memory-detail", action="store_true",
                        help="one worker only: what it holds after the varied load (its "
                        "memory by kind, Python objects by file and line, each cache)")
    parser.add_argument("--varied", type=int, default=1500,
                        help="different ~22 KB wheels of the varied warm load (0: none)")
    parser.add_argument("--checksum-headers", default="sha1,md5",
                        type=lambda v: tuple(a for a in v.split(",") if a),
                        help="checksum files the static upstream sends as X-Checksum-<Alg> "
                        "headers with a Maven file (default as Central: sha1,md5; empty: none)")
    args = parser.parse_args()
    if args.memory_detail and args.workers != [1]:
        parser.error("--memory-detail runs one worker: --workers 1")
    if args.stockade_tree is not None:
        args.stockade_tree = args.stockade_tree.resolve()
    if shutil.which("wrk") is None and not args.bursts_only:
        sys.exit("wrk not found: apt-get install wrk")
    os.environ.pop("STOCKADE_CONFIG", None)
    with work_folder("stockade-workers-", keep=args.keep) as work:
        run(args, work)


if __name__ == "__main__":
    main()
