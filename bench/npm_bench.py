"""npm proxy benchmark: every figure is a ratio to a baseline measured in the same run.

Prints:

  (a) wall time of `npm install` (fresh npm cache, no lockfile) of a project with
      40+ packages through the warm proxy, divided by the same install straight
      from the upstream registry server (Verdaccio, installed by .ci/setup-npm.sh);
  (b) time to serve a 20 MB packument with 5,000 versions on a warm cache, full and
      abbreviated, divided by the time to serve the same upstream bytes as a static
      file; plus the one-off cold render time;
  (c) 20 concurrent cold requests of 20 different 20 MB packuments, and the latency
      of a small packument request meanwhile (rendering is off the event loop).

    python -m bench.npm_bench [--skip-install]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import start_proxy, start_static

TOOLS = Path(__file__).resolve().parents[1] / ".ci" / ".tools" / "npm" / "node_modules" / ".bin"
PACKAGES = 44


def _tree(rng: random.Random) -> list[dict[str, Any]]:
    """Manifests of a dependency tree: each package depends on two older ones."""
    out: list[dict[str, Any]] = []
    for i in range(PACKAGES):
        name = f"@bench/p{i:02d}" if i % 5 == 0 else f"bench-p{i:02d}"
        deps = {}
        for j in rng.sample(range(i), min(i, 2)):
            dep = out[j]
            deps[str(dep["name"])] = "^" + str(dep["version"])
        out.append({"name": name, "version": f"1.{i % 3}.0", "main": "index.js",
                    "license": "MIT", "dependencies": deps})
    return out


def _publish_all(registry: Any, root: Path, rng: random.Random) -> list[dict[str, Any]]:
    manifests = _tree(rng)

    def publish(manifest: dict[str, Any]) -> None:
        payload = rng.randbytes(30_000).hex()  # ~60 kB of incompressible text per package
        registry.publish(root, manifest, {"index.js": "module.exports = 1;\n",
                                          "data.txt": payload})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(publish, manifests))
    return manifests


def _npm_install(work: Path, registry_url: str, home: Path) -> float:
    from testbed.npm_registry import npm_env

    shutil.rmtree(work / "node_modules", ignore_errors=True)
    cache = home / f"cache-{time.monotonic_ns()}"
    userconfig = home / "npmrc"
    userconfig.write_text(f"registry={registry_url}\n")
    started = time.perf_counter()
    subprocess.run(
        [str(TOOLS / "npm") if (TOOLS / "npm").exists() else "npm", "install",
         "--no-package-lock", "--no-audit", "--no-fund", "--userconfig", str(userconfig),
         "--cache", str(cache)],
        cwd=work, env=npm_env(home), check=True, capture_output=True, timeout=600,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    return elapsed


def bench_install(work: Path) -> None:
    from testbed.npm_registry import Verdaccio

    if not (TOOLS / "verdaccio").exists():
        print("(a) skipped: Verdaccio is not installed (run .ci/setup-npm.sh)")
        return
    rng = random.Random(11)
    registry = Verdaccio(work / "verdaccio").start()
    proxy = None
    try:
        manifests = _publish_all(registry, work, rng)
        project = work / "project"
        project.mkdir()
        top = {m["name"]: "^" + m["version"] for m in manifests[-12:]}
        (project / "package.json").write_text(json.dumps(
            {"name": "bench-project", "version": "1.0.0", "private": True, "dependencies": top}))
        proxy = start_proxy(registry.url, work / "proxy", work / "proxy.log", ecosystem="npm")
        home = work / "home"
        home.mkdir()
        _npm_install(project, proxy.url("/npm/"), home)  # warm the proxy
        count = sum(1 for _ in (project / "node_modules").glob("**/package.json"))
        direct, through = [], []
        for _ in range(3):
            direct.append(_npm_install(project, registry.url, home))
            through.append(_npm_install(project, proxy.url("/npm/"), home))
        d, t = statistics.median(direct), statistics.median(through)
        print(f"(a) npm install of {count} packages, fresh npm cache, median of 3: "
              f"upstream {d:.2f} s, stockade warm {t:.2f} s -> ratio {t / d:.3f} "
              f"(target <= 1.10)")
    finally:
        if proxy is not None:
            proxy.stop()
        registry.stop()


def big_packument(name: str, versions: int, base: str) -> bytes:
    """A full packument shaped like a busy real one (~4 kB per version)."""
    rng = random.Random(5)
    doc: dict[str, Any] = {"_id": name, "name": name, "versions": {}, "time": {},
                           "dist-tags": {}, "readme": "x" * 20_000}
    for i in range(versions):
        version = f"{i // 100}.{i % 100}.0"
        tgz = rng.randbytes(64)
        doc["versions"][version] = {
            "name": name, "version": version, "description": "A package " + "y" * 2600,
            "main": "index.js", "license": "MIT",
            "dependencies": {f"dep-{j}": f"^{j}.0.0" for j in range(12)},
            "devDependencies": {f"dev-{j}": f"^{j}.1.0" for j in range(20)},
            "scripts": {"test": "node test.js", "build": "tsc -p ."},
            "repository": {"type": "git", "url": f"git+https://example.test/{name}.git"},
            "_id": f"{name}@{version}", "_npmVersion": "10.8.0", "_nodeVersion": "20.11.0",
            "maintainers": [{"name": "someone", "email": "someone@example.test"}],
            "dist": {
                "tarball": f"{base}{name}/-/{name}-{version}.tgz",
                "shasum": hashlib.sha1(tgz).hexdigest(),  # noqa: S324 (npm's field)
                "integrity": "sha512-" + hashlib.sha512(tgz).hexdigest()[:86] + "==",
                "fileCount": 12, "unpackedSize": 123456,
                "signatures": [{"keyid": "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
                                "sig": "MEUCIQ" + "A" * 90}],
            },
        }
        doc["time"][version] = f"20{10 + i // 400:02d}-01-01T00:00:{i % 60:02d}.000Z"
    doc["dist-tags"]["latest"] = version
    doc["time"]["modified"] = "2025-01-01T00:00:00.000Z"
    return json.dumps(doc, separators=(",", ":")).encode()


async def _serve_times(url: str, headers: dict[str, str], rounds: int) -> list[float]:
    """Seconds per full GET; the last element is the body size in bytes."""
    times: list[float] = []
    size = 0
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                resp.raise_for_status()
                size = len(await resp.read())
            times.append(time.perf_counter() - started)
    return [*times, float(size)]


def bench_packument(work: Path) -> None:
    root = work / "static"
    (root / "npm").mkdir(parents=True)
    (root / "simple").mkdir()
    (root / "files").mkdir()
    static = start_static(root, work / "static.log")
    proxy = None
    try:
        body = big_packument("bigpkg", 5000, static.url("/npm/"))
        (root / "npm" / "bigpkg.json").write_bytes(body)
        proxy = start_proxy(static.url("/npm/"), work / "proxy-pk", work / "proxy-pk.log",
                            ecosystem="npm")
        full = {"Accept": "application/json", "Accept-Encoding": "identity"}
        corgi = {"Accept": "application/vnd.npm.install-v1+json; q=1.0, application/json; "
                           "q=0.8, */*", "Accept-Encoding": "identity"}
        cold = asyncio.run(_serve_times(proxy.url("/npm/bigpkg"), full, 1))[0]
        cold_c = asyncio.run(_serve_times(proxy.url("/npm/bigpkg"), corgi, 1))[0]
        rounds = 30

        def median(url: str, headers: dict[str, str]) -> tuple[float, float]:
            *times, size = asyncio.run(_serve_times(url, headers, rounds))
            return statistics.median(times), size / 1e6

        base, base_mb = median(static.url("/npm/bigpkg"), full)
        warm_f, full_mb = median(proxy.url("/npm/bigpkg"), full)
        warm_c, corgi_mb = median(proxy.url("/npm/bigpkg"), corgi)
        print(f"(b) packument of {base_mb:.1f} MB, 5000 versions, warm, median of {rounds}: "
              f"static file {base * 1000:.1f} ms; stockade full ({full_mb:.1f} MB) "
              f"{warm_f * 1000:.1f} ms -> ratio {warm_f / base:.2f}; abbreviated "
              f"({corgi_mb:.1f} MB) {warm_c * 1000:.1f} ms -> ratio {warm_c / base:.2f}, "
              f"per MB {(warm_c / corgi_mb) / (base / base_mb):.2f}; one-off cold render: "
              f"full {cold * 1000:.0f} ms, abbreviated {cold_c * 1000:.0f} ms")
        stall = asyncio.run(_stall(root, proxy.url("/npm/"), static.url("/npm/")))
        print(f"(c) 20 concurrent cold requests for 20 different 20 MB packuments: all served "
              f"in {stall[0]:.1f} s; meanwhile {stall[4]} requests of a small packument "
              f"answered in p50 {stall[1] * 1000:.1f} ms, p90 {stall[5] * 1000:.1f} ms, max "
              f"{stall[2] * 1000:.1f} ms (before the burst: {stall[3] * 1000:.1f} ms)")
    finally:
        if proxy is not None:
            proxy.stop()
        static.stop()


async def _stall(root: Path, proxy: str, upstream: str) -> tuple[float, float, float, float,
                                                                int, float]:
    """Render 20 big packuments at once while timing requests of a small one."""
    for i in range(20):
        (root / "npm" / f"big{i}.json").write_bytes(big_packument(f"big{i}", 5000, upstream))
    (root / "npm" / "small.json").write_bytes(big_packument("small", 3, upstream))
    async def get(session: aiohttp.ClientSession, name: str) -> float:
        started = time.perf_counter()
        async with session.get(proxy + name) as resp:
            resp.raise_for_status()
            await resp.read()
        return time.perf_counter() - started

    async def burst() -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(get(session, f"big{i}") for i in range(20)))

    def probe(done: threading.Event) -> list[float]:
        # Its own thread and loop, so the burst's reading does not delay the probe.
        async def run() -> list[float]:
            out = []
            async with aiohttp.ClientSession() as session:
                while not done.is_set():
                    out.append(await get(session, "small"))
                    await asyncio.sleep(0.01)
            return out

        return asyncio.run(run())

    async with aiohttp.ClientSession() as session:
        before = await get(session, "small")
    done = threading.Event()
    prober = asyncio.create_task(asyncio.to_thread(probe, done))
    started = time.perf_counter()
    await burst()
    total = time.perf_counter() - started
    done.set()
    small = await prober
    p90 = statistics.quantiles(small, n=10)[-1] if len(small) > 1 else small[0]
    return total, statistics.median(small), max(small), before, len(small), p90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-install", action="store_true", help="skip (a)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stockade-npm-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_install:
            bench_install(work)
        bench_packument(work)


if __name__ == "__main__":
    main()
