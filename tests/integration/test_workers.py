"""``stockade serve`` with ``server.workers`` > 1, as real processes on 127.0.0.1.

What the workers must agree on is checked from outside: a burst of cold requests
spread over the workers reaches the (counting) fake upstream once per document;
one scrape shows every worker's counts; refusals written by several workers make
one decision log that verifies; SIGHUP to the supervisor reloads every worker; a
killed worker is replaced; start-up errors stay one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.net import free_port
from testbed.procs import children

pytestmark = pytest.mark.timeout(600)  # several multi-process start-ups on a busy machine

_SRC = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
    return env


def _poll(condition: Callable[[], bool], bound_s: float = 120) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


class Served:
    """``stockade serve`` with a config written by the test."""

    def __init__(self, tmp_path: Path, upstream: str, **config: Any) -> None:
        self.port = free_port()
        self.storage = tmp_path / "data"
        self.log = tmp_path / "serve.log"
        self.config = tmp_path / "stockade.yaml"
        server = {"host": "127.0.0.1", "port": self.port, "workers": 3,
                  **config.pop("server", {})}
        self.config.write_text(yaml.safe_dump({
            "server": server,
            "storage": {"path": str(self.storage), "min_free_bytes": 0},
            "pypi": {"upstreams": [{"name": "pypi", "url": upstream, "retries": 0}],
                     "cache": {"metadata_ttl_s": 3600}},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            **config,
        }))
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config",
                 str(self.config)], stdout=log, stderr=subprocess.STDOUT, env=_env())
        _poll(lambda: "listening on" in self.log.read_text() or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.log.read_text()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> set[int]:
        return children(self.proc.pid)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()
                if line.startswith("{")]

    def served_by(self, path: str) -> set[int]:
        """The worker processes whose access log shows ``path``."""
        return {int(line["pid"]) for line in self.lines()
                if line.get("logger") == "stockade.access" and line.get("path") == path}

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as resp:  # noqa: S310
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


@pytest.fixture
def upstream() -> Iterator[tuple[FakePyPI, ThreadedServer]]:
    index = FakePyPI()
    server = ThreadedServer(index.app).start()
    yield index, server
    server.stop()


@pytest.fixture
def serve(tmp_path: Path, upstream: tuple[FakePyPI, ThreadedServer]) -> Iterator[
        Callable[..., Served]]:
    started: list[Served] = []

    def start(**config: Any) -> Served:
        served = Served(tmp_path, upstream[1].url("/simple/"), **config)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


async def _burst(url: str, count: int) -> list[tuple[int, bytes]]:
    """``count`` GETs at once, each on its own connection (so the kernel spreads them)."""
    async def one() -> tuple[int, bytes]:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session, \
                session.get(url, timeout=aiohttp.ClientTimeout(total=120)) as resp:
            return resp.status, await resp.read()
    return await asyncio.gather(*(one() for _ in range(count)))


def _sum(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
         **labels: str) -> float:
    return sum(v for (n, ls), v in metrics.items()
               if n == name and all((k, x) in ls for k, x in labels.items()))


def test_a_cold_burst_over_workers_asks_the_upstream_once(
    serve: Callable[..., Served], upstream: tuple[FakePyPI, ThreadedServer],
) -> None:
    index, _ = upstream
    dist = index.add_wheel("demo", "1.0", payload_bytes=1_000_000)
    index.faults[dist.filename] = "slow"  # the fill lasts while the others arrive
    served = serve()
    assert len(served.workers()) == 3

    path = f"/pypi/files/demo/{dist.filename}"
    results = asyncio.run(_burst(served.url + path, 50))
    assert [status for status, _ in results] == [200] * 50
    assert {hashlib.sha256(body).hexdigest() for _, body in results} == {dist.sha256}
    # one request of any kind per document: the project page and the file
    assert index.count("/simple/demo/") == 1
    assert index.count(dist.filename) == 1
    assert len(index.requests) == 2, index.requests
    _poll(lambda: len(served.served_by(path)) >= 2)  # the burst was spread over workers

    # one scrape (answered by any worker) counts what every worker answered
    artifacts = _sum(served.metrics(), "stockade_requests_total", ecosystem="pypi")
    assert artifacts == 50
    assert served.stop() == 0


def test_refusals_from_several_workers_make_one_verified_log(
    serve: Callable[..., Served], upstream: tuple[FakePyPI, ThreadedServer], tmp_path: Path,
) -> None:
    index, _ = upstream
    dists = [index.add_wheel(f"evil{n}", "1.0") for n in range(4)]
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"rules": {"lists": {"deny": [
        {"ecosystem": "pypi", "name": "evil*", "reason": "a test's deny entry"}]}}}))
    served = serve(policy={"file": str(policy)})

    async def refusals() -> list[tuple[int, bytes]]:
        bursts = [_burst(f"{served.url}/pypi/files/evil{n}/{d.filename}", 10)
                  for n, d in enumerate(dists)]
        return [r for burst in await asyncio.gather(*bursts) for r in burst]

    results = asyncio.run(refusals())
    assert [status for status, _ in results] == [403] * 40
    assert served.stop() == 0  # every worker writes out what it queued

    verify = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "stockade.proxy.cli", "log", "verify", "--config",
         str(served.config)], capture_output=True, text=True, env=_env(), timeout=120,
        check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    records = [json.loads(line) for line in
               (served.storage / "decisions.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert len(records) == 40, len(records)  # one per refusal
    # each worker records its own refusals: these came from several
    refusing = set().union(*(served.served_by(f"/pypi/files/evil{n}/{d.filename}")
                             for n, d in enumerate(dists)))
    assert len(refusing) >= 2, "refusals came from one worker only"


def test_sighup_to_the_supervisor_reloads_every_worker(
    serve: Callable[..., Served], upstream: tuple[FakePyPI, ThreadedServer], tmp_path: Path,
) -> None:
    index, _ = upstream
    dist = index.add_wheel("demo", "1.0")
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"rules": {"lists": {"deny": []}}}))
    # no polling of the file: only the signal can put the new policy in force
    served = serve(server={"workers": 2}, policy={"file": str(policy), "reload_check_s": 0})
    page = f"/pypi/files/demo/{dist.filename}"
    assert {s for s, _ in asyncio.run(_burst(served.url + page, 10))} == {200}

    policy.write_text(yaml.safe_dump({"rules": {"lists": {"deny": [
        {"ecosystem": "pypi", "name": "demo", "reason": "denied after start"}]}}}))
    served.proc.send_signal(signal.SIGHUP)
    _poll(lambda: _sum(served.metrics(), "stockade_policy_reloads_total",
                       result="applied") == 2)
    statuses = [s for s, _ in asyncio.run(_burst(served.url + page, 30))]
    assert statuses == [403] * 30
    assert len(served.served_by(page)) == 2
    assert served.stop() == 0


def test_a_killed_worker_is_replaced_and_sigterm_stops_all(
    serve: Callable[..., Served],
) -> None:
    served = serve(server={"workers": 2})
    first = served.workers()
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    _poll(lambda: len(served.workers() - first) == 1 and len(served.workers()) == 2)
    assert "started again" in served.log.read_text()
    for _ in range(10):
        with urllib.request.urlopen(served.url + "/healthz", timeout=30) as resp:  # noqa: S310
            assert resp.status == 200
    workers = served.workers()
    assert served.stop() == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert "Traceback" not in served.log.read_text()


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=_env(),  # noqa: S603
                          timeout=240, check=False)


def _config(tmp_path: Path, storage: Path, port: int) -> Path:
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "workers": 2},
        "storage": {"path": str(storage), "min_free_bytes": 0},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
    }))
    return path


def _one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("stockade: ")]
    for word in words:
        assert word in line


def test_start_up_errors_stay_one_line_with_workers(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run([*command, str(_config(tmp_path, tmp_path / "data", port))])
    _one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")

    (tmp_path / "a-file").write_text("not a directory")
    result = _run([*command, str(_config(tmp_path, tmp_path / "a-file" / "data",
                                         free_port()))])
    _one_line_error(result, "cannot use storage at", str(tmp_path / "a-file"))
