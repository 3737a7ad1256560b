"""A real ``stockade serve`` (one process, and workers) keeps every access line across a
clean stop: lines are written in batches, and those waiting when SIGTERM or SIGINT
arrives are written before the process ends, once each and in the order served."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from testbed.net import free_port
from testbed.procs import serve

pytestmark = pytest.mark.timeout(900)  # real start-ups (an index built) on a busy machine

_CONNECTIONS = 4
_EACH = 60


async def _requests(url: str) -> None:
    """``_EACH`` requests in turn on each of ``_CONNECTIONS`` connections, each with
    its own request id (``c<connection>-<n>``)."""
    async def one_connection(c: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for n in range(_EACH):
                async with session.get(url, headers={"X-Request-Id": f"c{c}-{n:04d}"}) as resp:
                    assert resp.status == 200
                    await resp.read()

    await asyncio.gather(*(one_connection(c) for c in range(_CONNECTIONS)))


@pytest.mark.parametrize(("workers", "stop"), [(1, signal.SIGTERM), (2, signal.SIGTERM),
                                               (1, signal.SIGINT)])
def test_every_access_line_is_written_by_a_clean_stop(
        tmp_path: Path, workers: int, stop: signal.Signals) -> None:
    port = free_port()
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "workers": workers},
        "storage": {"path": str(tmp_path / "data"), "min_free_bytes": 0},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
    }))
    log = tmp_path / "serve.log"
    proc = serve(config, log)
    try:
        asyncio.run(_requests(f"http://127.0.0.1:{port}/healthz"))
        proc.send_signal(stop)  # at once: the last lines are still waiting to be written
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{")]
    ids = [line["request_id"] for line in lines
           if line.get("logger") == "stockade.access" and line.get("path") == "/healthz"]
    assert sorted(ids) == sorted(f"c{c}-{n:04d}" for c in range(_CONNECTIONS)
                                 for n in range(_EACH))
    for c in range(_CONNECTIONS):  # one connection's requests, in the order served
        mine = [i for i in ids if i.startswith(f"c{c}-")]
        assert mine == sorted(mine)
