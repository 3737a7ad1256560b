"""Warm serving against nginx: the table of issue 20, in one run on 127.0.0.1.

Starts a static upstream over a generated tree (``bench.serving_tree``: wheels, an npm
packument and tarball, Maven jars, of the issue's sizes), nginx (Debian's package) with
``proxy_cache`` over that upstream as the ceiling, and stockade with default settings
over the same upstream; warms both, then drives ``wrk`` (2 threads, 64 connections)
at each case, alternating nginx and stockade within each round so the machine's drift
touches both alike. Prints req/s of each, the ratio, p99 on the ~1 MB cases, and the
resident memory of each whole process tree idle (after warming) and under load (the
most seen while ``wrk`` ran).

With ``--accel`` (the default for this checkout) a third contender runs: stockade in
front-server mode (``server.accel_redirect``) behind nginx configured as the README's
sample (``testbed.frontnginx``), stockade deciding every request and nginx sending
the stored files; its memory is nginx's and stockade's trees together.

With ``--bare`` (the default) the 22 KB wheel's row gains Python's floor: a minimal
aiohttp app (``bench.bare_aiohttp``, as many processes as stockade's workers) answering
the same bytes from memory, measured in the same rounds and printed as a ratio to nginx,
so the table shows what aiohttp alone reaches beside what stockade does; and a second
floor, aiohttp's low-level server (``web.Server`` with one handler: no ``Application``,
router or middleware chain), with each floor's CPU time per request.

    python -m bench.serving [--duration S] [--rounds N] [--quick] [--stockade-tree DIR]
                            [--no-accel] [--no-huge] [--no-bare] [--workers N]

``--stockade-tree`` runs the stockade of another checkout (``git worktree add DIR
COMMIT``) with this bench, for a before/after. Needs ``nginx`` and ``wrk`` on PATH
(``apt-get install nginx wrk``); nothing else is fetched.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.procs import Peak, Proc, start_static, tree_memory, tree_pids, work_folder
from bench.serving_tree import Case, build
from testbed import frontnginx
from testbed.net import free_port

_NGINX_CONF = """\
worker_processes auto;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=bench:10m max_size=2g inactive=1d
                     use_temp_path=off;
    upstream static {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        # stockade's answers saved as files: the ceiling for serving the same bytes
        location /static/ {{ alias {dir}/static/; default_type application/json; }}
        location / {{
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1d;
            proxy_cache_lock on;
        }}
    }}
}}
"""

_LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Result:
    """What ``wrk`` measured over the rounds of one case on one server."""

    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # CPU time per request, whole trees


def _check_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"{' and '.join(missing)} not found: apt-get install nginx wrk")


def start_nginx(work: Path, upstream: int) -> Proc:
    """nginx with ``proxy_cache`` over the static upstream, as an unprivileged process."""
    folder = work / "nginx"
    folder.mkdir()
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=folder, upstream=upstream, port=port))
    cmd = ["nginx", "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf)]
    if os.geteuid() == 0:  # as root nginx would keep a root master: drop to nobody
        work.chmod(0o755)
        shutil.chown(folder, "nobody")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    log = work / "nginx.log"
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Proc(proc, port).wait_ready("/simple/", folder / "error.log")


def start_stockade(upstream: str, work: Path, tree: Path | None,
                   workers: int | None = None, *, name: str = "stockade",
                   server: dict[str, object] | None = None,
                   npm_cache: dict[str, object] | None = None) -> Proc:
    """stockade with default settings but for its upstreams, storage and port (and
    ``server.workers`` where given, ``server`` settings added, and ``npm.cache``
    settings where given)."""
    port = free_port()
    storage = work / f"{name}-data"
    settings: dict[str, object] = {"host": "127.0.0.1", "port": port, **(server or {})}
    if workers is not None:
        settings["workers"] = workers
    config = {
        "server": settings,
        "storage": {"path": str(storage)},
        "pypi": {"upstreams": [{"name": "static", "url": f"{upstream}simple/"}]},
        "npm": {"upstreams": [{"name": "static", "url": f"{upstream}npm/"}],
                **({"cache": npm_cache} if npm_cache else {})},
        "maven": {"upstreams": [{"name": "static", "url": f"{upstream}maven2/"}]},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, "-c", "import sys; from stockade.proxy.cli import main; "
           "sys.exit(main())", "serve", "--config", str(path)]
    log = work / f"{name}.log"
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=tree or Path.cwd())
    return Proc(proc, port).wait_ready("/readyz", log)


# the floors: aiohttp with an Application, and its low-level server alone
BARES = {"bare": (), "bare low-level": ("--lowlevel",)}


def start_bare(work: Path, root: Path, case: Case, processes: int,
               flags: tuple[str, ...] = ()) -> Proc:
    """``bench.bare_aiohttp`` answering ``case``'s upstream file at its stockade path."""
    port = free_port()
    log = work / f"bare{''.join(flags)}.log"
    cmd = [sys.executable, "-m", "bench.bare_aiohttp", "--file",
           str(root / case.upstream_path.lstrip("/")), "--path", case.stockade_path,
           "--port", str(port), "--processes", str(processes), *flags]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Proc(proc, port).wait_ready("/readyz", log)


def _bare_row(nginx: Result, bare: Result, label: str, processes: int, name: str) -> None:
    ratio = statistics.median(b / n for b, n in zip(bare.rps, nginx.rps, strict=True))
    server = ("aiohttp's low-level server, no Application" if name == "bare low-level"
              else "aiohttp Application")
    print(f"{name} ({server}, {processes} process(es), {label} from memory, nothing "
          f"decided or logged): {statistics.median(bare.rps):,.0f} req/s, {ratio:.3f}x "
          f"nginx, p99 {statistics.median(bare.p99_ms):.1f} ms, CPU "
          f"{statistics.median(bare.cpu_us):,.0f} us a request")


def _warm(proc: Proc | frontnginx.FrontNginx, path: str, times: int = 3,
          headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """GET ``path`` ``times`` times; the last body (as sent: not decompressed)."""
    body = b""
    for _ in range(times):
        req = urllib.request.Request(proc.url(path), headers=dict(headers))  # noqa: S310
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{proc.url(path)}: HTTP {resp.status}")
    return body


def tree_cpu_s(pids: list[int]) -> float:
    """CPU time (user and system) of the processes of the trees under ``pids``, in
    seconds: what a request costs, whatever else the machine is doing meanwhile."""
    total = 0.0
    for pid in [p for top in pids for p in tree_pids(top)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_wrk(url: str, duration: float, *, threads: int = 2, connections: int = 64,
            headers: tuple[tuple[str, str], ...] = (),
            script: Path | None = None) -> tuple[float, float, int]:
    """(req/s, p99 in ms, answers not 2xx/3xx) of ``wrk`` on ``url`` for ``duration``
    seconds (``script``: a Lua script of wrk's making the requests)."""
    flags = [flag for name, value in headers for flag in ("-H", f"{name}: {value}")]
    if script is not None:
        flags += ["-s", str(script)]
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
         *flags, url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rps.group(1)), float(p99.group(1)) * _LATENCY_UNITS[p99.group(2)],
            int(errors.group(1)) if errors else 0)


def wrk(url: str, duration: float,
        headers: tuple[tuple[str, str], ...] = ()) -> tuple[float, float]:
    """(req/s, p99 in ms) of ``wrk -t2 -c64`` on ``url`` for ``duration`` seconds; every
    answer must be 2xx or 3xx."""
    rps, p99, errors = run_wrk(url, duration, headers=headers)
    if errors:
        raise RuntimeError(f"{url}: {errors} answers were not 2xx/3xx")
    return rps, p99


def _table(cases: list[Case], results: dict[tuple[str, str], Result],
           rss: dict[str, tuple[float, float]], rounds: int, duration: float) -> None:
    names = [name for name in rss if name != "nginx"]
    print(f"\nwarm GET, wrk -t2 -c64, {duration:g} s x {rounds}, median req/s "
          "(ratio: median of the rounds' contender/nginx)")
    head = "".join(f" {n:>14} | {'ratio':>6} |" for n in names)
    print(f"| {'case':<20} | {'size':>9} | {'nginx':>8} |{head}")
    print(f"| {'-' * 20} | {'-' * 9} | {'-' * 8} |" + f" {'-' * 14} | {'-' * 6} |" * len(names))
    for case in cases:
        ng = results["nginx", case.label]
        row = ""
        for name in names:
            st = results[name, case.label]
            ratio = statistics.median(s / n for s, n in zip(st.rps, ng.rps, strict=True))
            row += f" {statistics.median(st.rps):>14,.0f} | {ratio:>5.3f}x |"
        print(f"| {case.label:<20} | {case.size:>9,} | {statistics.median(ng.rps):>8,.0f} |{row}")
    print("\nCPU time per request, us (user + system, whole process trees; steadier "
          "than req/s on a busy machine)")
    print(f"| {'case':<20} |" + "".join(f" {n:>14} |" for n in rss))
    for case in cases:
        cells = "".join(f" {statistics.median(results[n, case.label].cpu_us):>14,.0f} |"
                        for n in rss)
        print(f"| {case.label:<20} |{cells}")
    for case in cases:
        if "1 MB" in case.label:
            p99 = ", ".join(f"{name} {statistics.median(results[name, case.label].p99_ms):.1f}"
                            for name in rss)
            print(f"p99 on {case.label}, ms: {p99}")
    for server, (idle, peak) in rss.items():
        print(f"RSS idle / under load, MiB, {server} (whole process tree): "
              f"{idle:.0f} / {peak:.0f}")


def run(args: argparse.Namespace, work: Path) -> None:
    root = work / "upstream"
    upstream_port = free_port()
    cases = build(root, f"http://127.0.0.1:{upstream_port}/", huge=args.huge)
    static = start_static(root, work / "static.log", port=upstream_port)
    servers: dict[str, Proc | frontnginx.FrontNginx] = {}
    behind: dict[str, list[int]] = {}  # more process trees a contender's memory counts
    helpers: list[Proc] = []
    bares: dict[str, Proc] = {}
    small = next(case for case in cases if case.label == "22 KB wheel")
    processes = args.workers or len(os.sched_getaffinity(0))
    try:
        if args.bare:
            for name, flags in BARES.items():
                bares[name] = start_bare(work, root, small, processes, flags)
                helpers.append(bares[name])
        servers["nginx"] = start_nginx(work, static.port)
        started = time.perf_counter()
        servers["stockade"] = start_stockade(static.url("/"), work, args.stockade_tree,
                                             args.workers)
        print(f"stockade answered /readyz {time.perf_counter() - started:.2f} s after start")
        if args.accel:
            prefix = "/_stockade_blobs/"
            accel = start_stockade(static.url("/"), work, args.stockade_tree, args.workers,
                                   name="accel",
                                   server={"accel_redirect": {"prefix": prefix}})
            helpers.append(accel)
            work.chmod(0o755)  # nginx's unprivileged workers read the storage
            servers["stockade+nginx"] = frontnginx.start(
                work / "front", stockade_port=accel.port, storage=work / "accel-data",
                prefix=prefix)
            behind["stockade+nginx"] = [accel.pid]
        saved = work / "nginx" / "static"
        saved.mkdir()
        for case in cases:
            for name, proc in servers.items():
                if name != "nginx":
                    body = _warm(proc, case.stockade_path, headers=case.headers)
                    if case.static and name == "stockade":
                        (saved / case.upstream_path.removeprefix("/static/")).write_bytes(body)
            _warm(servers["nginx"], case.upstream_path, headers=case.headers)
        time.sleep(1)
        memory = {name: tree_memory(proc.pid, *behind.get(name, []))
                  for name, proc in servers.items()}
        idle = {name: rss for name, (rss, _) in memory.items()}
        for name, (_, pss) in memory.items():
            print(f"PSS idle, MiB, {name} (whole process tree): {pss:.0f}")
        results = {(name, case.label): Result() for name in servers for case in cases}
        bare_results = {name: Result() for name in bares}
        peaks = {name: Peak(proc.pid, *behind.get(name, []))
                 for name, proc in servers.items()}
        for peak in peaks.values():
            peak.__enter__()
        try:
            for round_no in range(args.rounds):
                for case in cases:
                    for name, proc in servers.items():
                        path = case.upstream_path if name == "nginx" else case.stockade_path
                        trees = [proc.pid, *behind.get(name, [])]
                        cpu_before = tree_cpu_s(trees)
                        rps, p99 = wrk(proc.url(path), args.duration, case.headers)
                        cpu = tree_cpu_s(trees) - cpu_before
                        results[name, case.label].cpu_us.append(
                            1e6 * cpu / max(rps * args.duration, 1))
                        results[name, case.label].rps.append(rps)
                        results[name, case.label].p99_ms.append(p99)
                        print(f"round {round_no + 1}: {case.label:<20} {name:<8} "
                              f"{rps:>9,.0f} req/s  p99 {p99:7.1f} ms", flush=True)
                    for name, bare in bares.items() if case is small else ():
                        cpu_before = tree_cpu_s([bare.pid])
                        rps, p99 = wrk(bare.url(case.stockade_path), args.duration)
                        cpu = tree_cpu_s([bare.pid]) - cpu_before
                        bare_results[name].cpu_us.append(
                            1e6 * cpu / max(rps * args.duration, 1))
                        bare_results[name].rps.append(rps)
                        bare_results[name].p99_ms.append(p99)
                        print(f"round {round_no + 1}: {case.label:<20} {name:<8} "
                              f"{rps:>9,.0f} req/s  p99 {p99:7.1f} ms", flush=True)
        finally:
            for peak in peaks.values():
                peak.__exit__()
        rss = {name: (idle[name], max(peaks[name].rss, idle[name])) for name in servers}
        _table(cases, results, rss, args.rounds, args.duration)
        for name, result in bare_results.items():
            _bare_row(results["nginx", small.label], result, small.label, processes, name)
    finally:
        for proc in servers.values():
            proc.stop()
        for helper in helpers:
            helper.stop()
        static.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of 2 s: a smoke run")
    parser.add_argument("--stockade-tree", type=Path,
                        help="run the stockade of this checkout instead")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    parser.add_argument("--huge", action=argparse.BooleanOptionalAction, default=True,
                        help="the 20 MB packument's rows (against nginx sending stockade's "
                        "answer as a static file)")
    parser.add_argument("--accel", action=argparse.BooleanOptionalAction, default=None,
                        help="also run stockade in front-server mode behind nginx (default: "
                        "yes, but not with --stockade-tree, whose checkout may lack it)")
    parser.add_argument("--bare", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure a minimal aiohttp app sending the 22 KB wheel "
                        "from memory (Python's floor)")
    parser.add_argument("--workers", type=int,
                        help="server.workers for stockade (default: the default, one per "
                             "core); bench.workers compares several in one run")
    args = parser.parse_args()
    if args.accel is None:
        args.accel = args.stockade_tree is None
    if args.quick:
        args.duration, args.rounds = 2.0, 1
    if args.stockade_tree is not None:
        args.stockade_tree = args.stockade_tree.resolve()
    _check_tools()
    with work_folder("stockade-serving-", keep=args.keep) as work:
        run(args, work)


if __name__ == "__main__":
    main()
