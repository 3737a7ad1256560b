"""PyPI proxy benchmark: every figure is a ratio to a baseline measured in the same run.

Against a static upstream serving a local PEP 503 tree (by default the file://
extra index named in pip's configuration), prints:

  (a) warm-cache artifact throughput and p99 latency, proxy vs the static upstream;
  (b) wall time of `pip install --isolated --no-cache-dir` of 20 real projects through
      the warm proxy divided by the same install straight from the static upstream;
  (c) upstream fetch count for 50 concurrent cold requests of one file;
  (d) peak RSS of the proxy while streaming a 1 GiB artifact cold to 10 clients.

    python -m bench.pypi_bench [--tree DIR] [--skip-big]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.procs import Proc, rss_mib, start_proxy, start_static

PROJECTS = [
    "requests", "flask", "click", "attrs", "packaging", "python-dateutil", "pyyaml",
    "jinja2", "urllib3", "idna", "certifi", "six", "tomli", "pytz", "rich", "pygments",
    "markdown-it-py", "typing-extensions", "wheel", "itsdangerous",
]


def find_tree() -> Path | None:
    """The local PEP 503 tree that pip's configuration names, if any."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
            check=False, timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for url in re.findall(r"file://(\S+?)/simple", out):
        root = Path(url)
        if (root / "simple").is_dir() and (root / "files").is_dir():
            return root
    return None


def pick_files(tree: Path, count: int) -> list[tuple[str, str]]:
    """(project, filename) pairs of wheels between 20 kB and 2 MB, linked from pages."""
    rng = random.Random(7)
    picked = []
    pages = sorted((tree / "simple").iterdir())
    rng.shuffle(pages)
    for page in pages:
        index = page / "index.html"
        if not index.is_file():
            continue
        for filename in re.findall(r">([^<]+\.whl)<", index.read_text()):
            path = tree / "files" / filename
            if path.is_file() and 20_000 < path.stat().st_size < 2_000_000:
                picked.append((page.name, filename))
                break
        if len(picked) == count:
            break
    return picked


async def load(urls: list[str], total: int, concurrency: int) -> dict[str, float]:
    """Fire ``total`` GETs over ``urls`` with ``concurrency`` in flight."""
    latencies: list[float] = []
    size = 0
    queue = [urls[i % len(urls)] for i in range(total)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal size
            while queue:
                url = queue.pop()
                started = time.perf_counter()
                async with session.get(url) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: {resp.status}")
                latencies.append(time.perf_counter() - started)
                size += len(body)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": total / elapsed, "mbps": size / elapsed / 1e6,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def pip_install(index: str, target: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir",
         "--disable-pip-version-check", "--quiet", "--target", str(target),
         "--index-url", index, *PROJECTS],
        check=True, env=env, timeout=600,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


async def count(static: Proc, suffix: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(
        static.url(f"/_count?suffix={suffix}")
    ) as resp:
        return int((await resp.json())["count"])


async def bench_abc(tree: Path, work: Path) -> None:
    static = start_static(tree, work / "static.log")
    proxy = start_proxy(static.url("/simple/"), work / "proxy", work / "proxy.log")
    try:
        files = pick_files(tree, 40)
        proxied = [proxy.url(f"/pypi/files/{p}/{f}") for p, f in files]
        direct = [static.url(f"/files/{f}") for _, f in files]
        await load(proxied, len(proxied), 4)  # warm the cache
        s = await load(direct, 2000, 16)
        p = await load(proxied, 2000, 16)
        print("(a) warm artifact serving, 2000 GETs of 40 real wheels, 16 in flight")
        print(f"    static upstream : {s['rps']:8.0f} req/s {s['mbps']:7.1f} MB/s "
              f"p50 {s['p50_ms']:6.2f} ms p99 {s['p99_ms']:6.2f} ms")
        print(f"    stockade (warm) : {p['rps']:8.0f} req/s {p['mbps']:7.1f} MB/s "
              f"p50 {p['p50_ms']:6.2f} ms p99 {p['p99_ms']:6.2f} ms")
        print(f"    ratio proxy/static: throughput {p['rps'] / s['rps']:.2f}, "
              f"p99 latency {p['p99_ms'] / s['p99_ms']:.2f}")

        target = work / "target"
        pip_install(proxy.url("/pypi/simple/"), target)  # fill the proxy's cache
        pip_install(static.url("/simple/"), target)
        direct_t, proxy_t = [], []
        for _ in range(3):
            direct_t.append(pip_install(static.url("/simple/"), target))
            proxy_t.append(pip_install(proxy.url("/pypi/simple/"), target))
        d, q = statistics.median(direct_t), statistics.median(proxy_t)
        print(f"(b) pip install --isolated --no-cache-dir of {len(PROJECTS)} projects "
              "(median of 3)")
        print(f"    static upstream {d:.2f} s, stockade (warm) {q:.2f} s, ratio {q / d:.3f} "
              "(target <= 1.10)")

        cold_project, cold_file = next(
            pf for pf in pick_files(tree, 80)[40:] if pf not in files
        )
        before = await count(static, cold_file)
        await load([proxy.url(f"/pypi/files/{cold_project}/{cold_file}")], 50, 50)
        fetched = await count(static, cold_file) - before
        print(f"(c) 50 concurrent cold requests of {cold_file}: {fetched} upstream fetch(es) "
              "(target exactly 1)")
    finally:
        proxy.stop()
        static.stop()


def make_big_tree(root: Path, size: int) -> tuple[str, str]:
    """A one-project tree whose only file is ``size`` random bytes."""
    filename = "bigpkg-1.0-py3-none-any.whl"
    (root / "files").mkdir(parents=True)
    (root / "simple" / "bigpkg").mkdir(parents=True)
    digest = hashlib.sha256()
    with (root / "files" / filename).open("wb") as handle:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            chunk = hashlib.sha256(block + i.to_bytes(4, "big")).digest() + block[32:]
            handle.write(chunk)
            digest.update(chunk)
    (root / "simple" / "index.html").write_text('<a href="bigpkg/">bigpkg</a>')
    (root / "simple" / "bigpkg" / "index.html").write_text(
        f'<a href="../../files/{filename}#sha256={digest.hexdigest()}">{filename}</a>'
    )
    return "bigpkg", filename


async def bench_d(work: Path) -> None:
    size = 1 << 30
    project, filename = make_big_tree(work / "big", size)
    static = start_static(work / "big", work / "static-big.log")
    proxy = start_proxy(static.url("/simple/"), work / "proxy-big", work / "proxy-big.log")
    try:
        async with aiohttp.ClientSession() as session, session.get(
            proxy.url("/pypi/simple/bigpkg/")
        ) as resp:
            await resp.read()
        idle = rss_mib(proxy.pid)
        peak = idle
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mib(proxy.pid))
                await asyncio.sleep(0.05)

        async def client(session: aiohttp.ClientSession) -> int:
            got = 0
            async with session.get(proxy.url(f"/pypi/files/{project}/{filename}")) as resp:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    got += len(chunk)
            return got

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=900)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            sizes = await asyncio.gather(*(client(session) for _ in range(10)))
        elapsed = time.perf_counter() - started
        done.set()
        await sampler
        ok = all(s == size for s in sizes)
        print(f"(d) 1 GiB artifact, cold, 10 concurrent clients: all complete={ok} in "
              f"{elapsed:.1f} s; proxy RSS idle {idle:.0f} MiB, peak {peak:.0f} MiB "
              f"(target < 150 MiB), peak/idle {peak / idle:.2f}")
    finally:
        proxy.stop()
        static.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, help="a local PEP 503 tree (simple/ and files/)")
    parser.add_argument("--skip-big", action="store_true", help="skip (d), the 1 GiB run")
    args = parser.parse_args()
    tree = args.tree or find_tree()
    with tempfile.TemporaryDirectory(prefix="stockade-bench-") as tmp:
        work = Path(tmp)
        if tree is None:
            print("(a)-(c) skipped: no local PEP 503 tree found (pass --tree DIR)")
        else:
            print(f"upstream tree: {tree}")
            asyncio.run(bench_abc(tree, work))
        if not args.skip_big:
            asyncio.run(bench_d(work))


if __name__ == "__main__":
    main()
