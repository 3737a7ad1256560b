"""Installs through a warm stockade against the same installs straight from the upstream.

Starts local upstreams (the testbed's fakes, each serving a small fixed project's
dependencies: PyPI wheels, npm packages, and for Maven a small tree plus Debian's
Maven repository for the build plugins), one ``stockade serve`` (default settings)
over them, installs once through stockade to warm it, then times ``--pairs`` pairs
of the same install, straight and through stockade, alternating which goes first.
Each install starts from nothing on the client side (pip ``--no-cache-dir``, a fresh
npm cache and ``node_modules``, a fresh Maven local repository), so every file
crosses the network each time. Prints, per client, the median ratio
stockade/straight over the pairs and its spread (lowest and highest pair).

    python -m bench.installs [--pairs 10] [--clients pip,npm,mvn] [--keep]

Needs pip (this interpreter's), ``npm`` and ``mvn`` with Debian's build plugins
(``.ci/setup-maven.sh``); a client that is missing is skipped, saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.procs import Proc, work_folder
from testbed import maven_repo
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.net import free_port

_PY = [f"stockade-bench-inst-{n}" for n in range(8)]
_NPM = [f"stockade-bench-inst-{n}" for n in range(8)]
Install = Callable[[Path, str], None]  # (a fresh folder, the registry's URL)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900,
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")


def pypi_upstream() -> FakePyPI:
    index = FakePyPI()
    for n, name in enumerate(_PY):  # a chain: each wheel needs the next
        index.add_wheel(name, "1.0", requires=[_PY[n + 1]] if n + 1 < len(_PY) else [],
                        payload_bytes=50_000)
    return index


def pip_install(folder: Path, index_url: str) -> None:
    _run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
          "install", "--no-cache-dir", "--target", str(folder / "target"),
          "--index-url", index_url, _PY[0]], folder)


@dataclass
class _ServedNpm(FakeNpm):
    """The fake npm registry served from a thread: it names its own URL."""

    base: str = ""

    @property
    def url(self) -> str:
        return self.base


def npm_upstream() -> _ServedNpm:
    registry = _ServedNpm()
    for name in _NPM:
        registry.publish(name, "1.0.0")
    return registry


def npm_install(folder: Path, registry: str) -> None:
    (folder / "package.json").write_text(json.dumps({
        "name": "bench-app", "version": "1.0.0", "private": True,
        "dependencies": dict.fromkeys(_NPM, "1.0.0")}))
    (folder / ".npmrc").write_text("")
    _run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
          "--registry", registry, "--cache", str(folder / "cache"),
          "--userconfig", str(folder / ".npmrc")], folder)


def mvn_install(folder: Path, repository: str) -> None:
    (folder / "src" / "main" / "java" / "b").mkdir(parents=True)
    (folder / "pom.xml").write_text(maven_repo.POM.replace("DEPENDENCY", ""))
    (folder / "src" / "main" / "java" / "b" / "App.java").write_text(
        "package b; public class App { public static void main(String[] a) {} }\n")
    (folder / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>bench</id><mirrorOf>*</mirrorOf>"
        f"<url>{repository}</url></mirror></mirrors></settings>")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAVEN_")}
    _run(["mvn", "-B", "-q", "-s", str(folder / "settings.xml"),
          f"-Dmaven.repo.local={folder / 'm2'}", "compile"], folder, env)


def start_stockade(work: Path, pypi: str, npm: str, maven: str) -> Proc:
    """``stockade serve`` with default settings but for its upstreams and storage."""
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "storage": {"path": str(work / "stockade-data")},
        "pypi": {"upstreams": [{"name": "local", "url": pypi}]},
        "npm": {"upstreams": [{"name": "local", "url": npm}]},
        "maven": {"upstreams": [{"name": "local", "url": maven}]},
    }
    path = work / "stockade.yaml"
    path.write_text(yaml.safe_dump(config))
    log = work / "stockade.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config", str(path)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    served = Proc(proc, port)
    deadline = time.monotonic() + 600  # a busy machine starts it slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"stockade exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(served.url("/readyz"), timeout=5):  # noqa: S310
                return served
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"stockade did not become ready; see {log}")


def _timed(install: Install, folder: Path, url: str) -> float:
    folder.mkdir(parents=True)
    started = time.perf_counter()
    install(folder, url)
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def pairs(label: str, install: Install, straight: str, proxied: str, work: Path,
          count: int) -> None:
    _timed(install, work / f"{label}-warm", proxied)  # stockade holds everything now
    ratios, direct_s, proxy_s = [], [], []
    for n in range(count):
        order = [("straight", straight), ("stockade", proxied)]
        if n % 2:
            order.reverse()
        took = {name: _timed(install, work / f"{label}-{n}-{name}", url)
                for name, url in order}
        direct_s.append(took["straight"])
        proxy_s.append(took["stockade"])
        ratios.append(took["stockade"] / took["straight"])
        print(f"{label} pair {n + 1}: straight {took['straight']:.2f} s, stockade "
              f"{took['stockade']:.2f} s ({ratios[-1]:.2f}x)", flush=True)
    print(f"{label}: median {statistics.median(ratios):.3f}x straight (pairs "
          f"{min(ratios):.2f}x-{max(ratios):.2f}x; median straight "
          f"{statistics.median(direct_s):.2f} s, through stockade "
          f"{statistics.median(proxy_s):.2f} s)", flush=True)


def run(args: argparse.Namespace, work: Path) -> None:
    pypi, npm = pypi_upstream(), npm_upstream()
    maven = maven_repo.repository(maven_repo.M2)
    servers = {name: ThreadedServer(fake.app).start()
               for name, fake in (("pypi", pypi), ("npm", npm), ("maven", maven))}
    try:
        urls = {"pypi": servers["pypi"].url("/simple/"), "npm": servers["npm"].url("/"),
                "maven": servers["maven"].url("/maven2/")}
        npm.base = urls["npm"]
        proxy = start_stockade(work, urls["pypi"], urls["npm"], urls["maven"])
        try:
            cases: dict[str, tuple[Install, str, str]] = {
                "pip": (pip_install, urls["pypi"], proxy.url("/pypi/simple/")),
                "npm": (npm_install, urls["npm"], proxy.url("/npm/")),
                "mvn": (mvn_install, urls["maven"], proxy.url("/maven/")),
            }
            for label in args.clients:
                why = _missing(label)
                if why:
                    print(f"{label}: skipped, {why}")
                    continue
                install, straight, proxied = cases[label]
                pairs(label, install, straight, proxied, work, args.pairs)
        finally:
            proxy.stop()
    finally:
        for server in servers.values():
            server.stop()


def _missing(label: str) -> str | None:
    if label in ("npm", "mvn") and shutil.which(label) is None:
        return f"{label} is not installed"
    if label == "mvn" and not (maven_repo.COMPILER and maven_repo.RESOURCES):
        return f"{maven_repo.M2} lacks Debian's build plugins (.ci/setup-maven.sh)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--clients", default="pip,npm,mvn",
                        type=lambda v: [c for c in v.split(",") if c])
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    args = parser.parse_args()
    unknown = set(args.clients) - {"pip", "npm", "mvn"}
    if unknown:
        parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
    os.environ.pop("STOCKADE_CONFIG", None)
    with work_folder("stockade-installs-", keep=args.keep) as work:
        run(args, work)


if __name__ == "__main__":
    main()
