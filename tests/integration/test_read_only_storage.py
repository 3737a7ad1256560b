"""Storage that exists but cannot be written is served read-only: what is cached is
served, a cold fetch is a 503 at once naming why, refusals still answer (and their
records go to the log), /readyz says read-only, and pip installs what the cache
holds. A real `stockade serve` over a read-only bind mount in a private mount
namespace (root or not), fake upstreams in this process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.net import free_port

pytestmark = pytest.mark.timeout(300)  # two real start-ups on a busy machine


def _read_only_mounts(folder: Path) -> str | None:
    """Why no read-only bind mount of ``folder`` can be made here, or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(  # noqa: S603
        [unshare, "-rm", "sh", "-c", 'mkdir -p "$0" && mount --bind -o ro "$0" "$0" '
         '&& touch "$0/x"', str(folder)], capture_output=True, text=True, check=False)
    if "Read-only" not in probe.stderr:
        return f"no read-only bind mount can be made here: {probe.stderr.strip()[:200]}"
    return None


class _Serve:
    """``stockade serve`` as a process, its storage mounted read-only or not."""

    def __init__(self, tmp_path: Path, name: str, upstreams: dict[str, Any], *,
                 read_only: bool) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.storage = tmp_path / "data"
        self.log = tmp_path / f"{name}.log"
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "port": self.port},
            "storage": {"path": str(self.storage), "min_free_bytes": 0},
            **{eco: {"upstreams": ups, "cache": {"metadata_ttl_s": 0.001}}
               for eco, ups in upstreams.items()},
        }))
        command = [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config", str(config)]
        if read_only:
            unshare = shutil.which("unshare")
            assert unshare is not None
            command = [unshare, "-rm", "sh", "-c",
                       'mount --bind -o ro "$0" "$0" && exec "$@"', str(self.storage),
                       *command]
        self.command = command
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        for _ in range(2400):  # up to two minutes on a busy machine
            if "listening on" in self.text() or self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert self.proc.returncode is None and "listening on" in self.text(), self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 60)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def _pip_download(base: str, dest: Path) -> tuple[int, str]:
    """``pip download`` of demo-ro 1.0's wheel through stockade: (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir",
        "--disable-pip-version-check", "--no-deps", "--only-binary", ":all:",
        "--index-url", f"{base}/pypi/simple/", "-d", str(dest), "demo-ro==1.0",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with http.get(url) as resp:
        return resp.status, resp.reason or "", await resp.read()


async def test_read_only_storage_serves_its_cache_and_refuses_cold_fetches_with_503(
        tmp_path: Path, fake_pypi: FakePyPI, npm_registry: FakeNpm,
        http: aiohttp.ClientSession) -> None:
    why_not = _read_only_mounts(tmp_path / "probe")
    if why_not is not None:
        pytest.skip(why_not)
    wheel = fake_pypi.add_wheel("demo-ro", "1.0")
    sdist = fake_pypi.add_sdist("demo-ro", "1.0")
    tarball = npm_registry.publish("demo-ro", "1.0.0")
    upstreams = {
        "pypi": [{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
        "npm": [{"name": "npmjs", "url": npm_registry.url, "retries": 0}],
        "maven": [],
    }
    wheel_url = f"/pypi/files/demo-ro/{wheel.filename}"
    tgz_url = "/npm/demo-ro/-/demo-ro-1.0.0.tgz"
    # Fill the cache with a writable server.
    warm = _Serve(tmp_path, "warm", upstreams, read_only=False)
    await warm.start()
    try:
        for path in ("/pypi/simple/demo-ro/", wheel_url, "/npm/demo-ro", tgz_url):
            status, _, _ = await _get(http, warm.base + path)
            assert status == 200, path
        code, out = await _pip_download(warm.base, tmp_path / "pip-warm")
        assert code == 0, out
    finally:
        await warm.stop()
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("*"))
    asked = len(fake_pypi.requests), len(npm_registry.requests)

    ro = _Serve(tmp_path, "read-only", upstreams, read_only=True)
    await ro.start()
    try:
        # What is cached is served, metadata (revalidated, kept in memory) too.
        assert (await _get(http, ro.base + wheel_url))[::2] == (200, wheel.data)
        assert (await _get(http, ro.base + tgz_url))[::2] == (200, tarball.data)
        status, _, page = await _get(http, ro.base + "/pypi/simple/demo-ro/")
        assert status == 200 and wheel.filename.encode() in page
        status, _, doc = await _get(http, ro.base + "/npm/demo-ro")
        assert status == 200 and "1.0.0" in json.loads(doc)["versions"]
        # A cold fetch fails at once, saying why, and the upstream is not asked for it.
        status, reason, body = await _get(http, ro.base + f"/pypi/files/demo-ro/{sdist.filename}")
        assert status == 503
        assert "read-only" in reason and sdist.filename in reason
        assert b"Read-only file system" in body
        assert not any(p.endswith(sdist.filename) for _, p in fake_pypi.requests)
        # A refusal still answers, and its record goes to the log.
        status, reason, _ = await _get(http, ro.base + "/pypi/simple/reqeusts/")
        assert status == 403 and reason.startswith("Blocked by stockade:")
        status, _, body = await _get(http, ro.base + "/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["status"] == "read-only"
        assert ready["storage_read_only"] == "Read-only file system"
        status, _, body = await _get(http, ro.base + "/metrics")
        assert status == 200 and b"stockade_requests_total" in body
        # A real client installs what the cache holds.
        code, out = await _pip_download(ro.base, tmp_path / "pip-read-only")
        assert code == 0, out
        assert (tmp_path / "pip-read-only" / wheel.filename).read_bytes() == wheel.data
    finally:
        await ro.stop()
    log = ro.text()
    assert "Traceback" not in log
    assert "serving it read-only" in log
    assert log.count("cannot be written") >= 2  # storage, then the decision log, once each
    decisions = [line for line in log.splitlines() if "stockade.decisions" in line]
    assert any('\\"name\\": \\"reqeusts\\"' in line or '"name": "reqeusts"' in line
               for line in decisions), decisions
    after = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("*"))
    assert after == before
    assert len(fake_pypi.requests) > asked[0]  # metadata was revalidated upstream



async def test_a_large_packument_over_read_only_storage_is_revalidated_not_fetched_again(
        tmp_path: Path, npm_registry: FakeNpm, http: aiohttp.ClientSession) -> None:
    """A packument too large for the memory cache (over a quarter of its 64 MiB) is
    kept in the server's private scratch folder: each later request asks the upstream
    only whether it changed (a conditional GET answered 304) and serves it whole. It
    was fetched whole again by every request before, nothing having kept it."""
    why_not = _read_only_mounts(tmp_path / "probe")
    if why_not is not None:
        pytest.skip(why_not)
    npm_registry.publish("demo-big", "1.0.0")
    npm_registry.project_fields["demo-big"] = {"readme": "big " * 4_500_000}  # 18 MB
    (tmp_path / "data").mkdir()
    upstreams = {"pypi": [], "maven": [],
                 "npm": [{"name": "npmjs", "url": npm_registry.url, "retries": 0}]}
    ro = _Serve(tmp_path, "read-only", upstreams, read_only=True)
    await ro.start()
    try:
        for _ in range(3):
            status, _, doc = await _get(http, ro.base + "/npm/demo-big")
            assert status == 200 and len(doc) > 16 * 1024**2
            assert "1.0.0" in json.loads(doc)["versions"]
    finally:
        await ro.stop()
    asked = [headers for (_, path), headers in zip(npm_registry.requests,
                                                   npm_registry.headers_seen, strict=True)
             if path == "/demo-big"]
    assert len(asked) >= 3  # (each look-up revalidates: metadata_ttl_s is 1 ms here)
    assert "If-None-Match" not in asked[0]
    assert all("If-None-Match" in headers for headers in asked[1:]), asked
    assert not list((tmp_path / "data").rglob("*")), "read-only storage was written"
    assert "Traceback" not in ro.text()
