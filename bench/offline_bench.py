"""Installs with the upstream down: every figure is a ratio to the same install online.

For each ecosystem, a project is installed once through stockade to fill its cache
(the client's own cache always empty), then timed in three ways, in turn each round
(a new stockade process each time, over the same storage), median of ``--rounds``:

  online   the warm proxy, its upstream up (the baseline);
  down     the upstream stopped, a proxy over the same storage whose every metadata
           document and remembered 404 has expired (what a build meets hours into an
           outage): each is asked of the dead upstream once, then served stale;
  offline  the upstream stopped, a proxy with ``server.offline: true``.

Target: down and offline each within 1.5x of online. Ecosystems:

  pip    `pip install --isolated --no-cache-dir` of 20 real projects from the local
         PEP 503 tree pip's configuration names (as bench.pypi_bench);
  maven  `mvn compile` resolving 54 artifacts from Debian's packaged Maven repository
         (as bench.maven_bench), published with sha1 and md5 files only, as Central;
  npm    `npm ci` of 44 packages from a lockfile, Verdaccio as the upstream (as
         bench.npm_bench; .ci/setup-npm.sh installs it).

    python -m bench.offline_bench [--rounds N] [--only pip|maven|npm ...]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Proc, _spawn
from testbed.net import free_port

TINY_S = 1e-3  # a TTL that has passed by the time any request comes
Stop = Callable[[], None]


def start_stockade(ecosystem: str, upstream: str, storage: Path, log: Path, *, port: int,
                   offline: bool = False, expired: bool = False) -> Proc:
    """``stockade serve`` on ``port`` over ``storage`` with one upstream for ``ecosystem``."""
    cache: dict[str, Any] = {}
    if expired:
        cache = {"metadata_ttl_s": TINY_S, "negative_ttl_s": TINY_S}
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "access_log": False,
                   "offline": offline},
        "storage": {"path": str(storage)},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "logging": {"level": "WARNING"},
    }
    config[ecosystem] = {"upstreams": [{"name": "local", "url": upstream}], "cache": cache}
    storage.mkdir(parents=True, exist_ok=True)
    path = log.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    script = Path(sys.executable).parent / "stockade"
    return Proc(_spawn([str(script), "serve", "--config", str(path)], log), port).wait_ready(
        "/readyz", log)


def measure(name: str, what: str, ecosystem: str, start_upstream: Callable[[], Stop],
            upstream_url: str, prefix: str, install: Callable[[str], float], work: Path,
            rounds: int) -> None:
    """Fill, then time ``install(proxy_url)`` online, upstream down and offline, the
    three in turn each round (this machine's load drifts more than they differ)."""
    storage = work / f"{name}-data"
    times: dict[str, list[float]] = {"online": [], "down": [], "offline": []}
    logs = {mode: work / f"{name}-{mode}.log" for mode in times}
    port = free_port()  # one address for stockade, as clients (and lockfiles) know it
    for i in range(rounds + 1):
        for mode in times:
            stop = start_upstream() if mode == "online" else None
            proxy = start_stockade(ecosystem, upstream_url, storage, logs[mode], port=port,
                                   offline=mode == "offline", expired=mode == "down")
            try:
                took = install(proxy.url(prefix))
                if i > 0:  # the first online install fills stockade's cache
                    times[mode].append(took)
            except subprocess.CalledProcessError:
                print(f"{name}: the install failed {mode}; stockade's log:", file=sys.stderr)
                print("\n".join(logs[mode].read_text().splitlines()[-20:]), file=sys.stderr)
                raise
            finally:
                proxy.stop()
                if stop is not None:
                    stop()
    on, down, off = (statistics.median(times[m]) for m in ("online", "down", "offline"))
    print(f"{name}: {what}, median of {rounds}: online {on:.2f} s; upstream down "
          f"{down:.2f} s -> ratio {down / on:.2f}; offline mode {off:.2f} s -> ratio "
          f"{off / on:.2f} (target <= 1.5)", flush=True)


def _server(cmd: list[str], port: int, log: Path) -> Callable[[], Stop]:
    """Starts of one server process on a fixed port (its URL stays the same)."""
    def start() -> Stop:
        proc = Proc(_spawn([*cmd, "--port", str(port)], log), port)
        proc.wait_ready("/_count", log)
        return proc.stop
    return start


def bench_pip(work: Path, rounds: int) -> None:
    from bench.pypi_bench import PROJECTS, find_tree, pip_install

    tree = find_tree()
    if tree is None:
        print("pip: skipped: no local PEP 503 tree in pip's configuration")
        return
    port = free_port()
    start = _server([sys.executable, "-m", "bench.static_index", "--root", str(tree)], port,
                    work / "pip-static.log")
    target = work / "pip-target"
    measure("pip", f"pip install of {len(PROJECTS)} projects", "pypi", start,
            f"http://127.0.0.1:{port}/simple/", "/pypi/simple/",
            lambda url: pip_install(url, target), work, rounds)


def bench_maven(work: Path, rounds: int) -> None:
    from bench.maven_bench import _compile, _project
    from testbed.maven_repo import M2

    if shutil.which("mvn") is None or not M2.is_dir():
        print(f"maven: skipped: needs mvn and {M2} (.ci/setup-maven.sh)")
        return
    port = free_port()
    start = _server([sys.executable, "-m", "bench.maven_static", "--root", str(M2),
                     "--checksums", "sha1,md5"], port, work / "maven-static.log")
    counter = iter(range(10_000))

    def compile_(url: str) -> float:
        project = _project(work / f"maven-project{next(counter)}", url)
        try:
            return _compile(project, work / "m2")[0]
        except subprocess.CalledProcessError as exc:
            print("\n".join(str(exc.stdout).splitlines()[-30:]), file=sys.stderr)
            raise

    measure("maven", "mvn compile resolving every plugin and dependency into an empty "
            "local repository", "maven", start, f"http://127.0.0.1:{port}/maven2/", "/maven/",
            compile_, work, rounds)


def bench_npm(work: Path, rounds: int) -> None:
    import testbed.npm_registry
    from bench.npm_bench import TOOLS, _publish_all
    from testbed.npm_registry import Verdaccio, npm_env

    testbed.npm_registry.TOOLS = TOOLS  # where .ci/setup-npm.sh puts them, whatever the branch

    if not (TOOLS / "verdaccio").exists():
        print("npm: skipped: Verdaccio is not installed (run .ci/setup-npm.sh)")
        return
    registry = Verdaccio(work / "verdaccio").start()
    manifests = _publish_all(registry, work, random.Random(11))
    project = work / "npm-project"
    project.mkdir()
    top = {m["name"]: "^" + m["version"] for m in manifests[-12:]}
    (project / "package.json").write_text(json.dumps(
        {"name": "bench-project", "version": "1.0.0", "private": True, "dependencies": top}))
    home = work / "npm-home"
    home.mkdir()
    npm = str(TOOLS / "npm") if (TOOLS / "npm").exists() else "npm"

    def npm_run(url: str, *args: str) -> float:
        cache = home / f"cache-{time.monotonic_ns()}"
        userconfig = home / "npmrc"
        userconfig.write_text(f"registry={url}\n")
        started = time.perf_counter()
        try:
            subprocess.run([npm, *args, "--no-audit", "--no-fund", "--userconfig",
                            str(userconfig), "--cache", str(cache)], cwd=project,
                           env=npm_env(home), check=True, capture_output=True, timeout=900)
        except subprocess.CalledProcessError as exc:
            print(exc.stderr.decode(errors="replace")[-3000:], file=sys.stderr)
            raise
        elapsed = time.perf_counter() - started
        shutil.rmtree(cache, ignore_errors=True)
        return elapsed

    def npm_ci(url: str) -> float:
        if not (project / "package-lock.json").exists():
            npm_run(url, "install")  # writes the lockfile, through stockade
        return npm_run(url, "ci")

    registry.stop()

    def start() -> Stop:
        registry.start()  # the same port and storage: the same registry again
        return registry.stop

    measure("npm", f"npm ci of {len(manifests)} packages", "npm", start, registry.url,
            "/npm/", npm_ci, work, rounds)


BENCHES = {"pip": bench_pip, "maven": bench_maven, "npm": bench_npm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=list(BENCHES))
    args = parser.parse_args()
    for name in args.only:
        with tempfile.TemporaryDirectory(prefix=f"stockade-offline-{name}-") as tmp:
            BENCHES[name](Path(tmp), args.rounds)


if __name__ == "__main__":
    main()
