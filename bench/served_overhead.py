"""What recording served artifacts costs a warm artifact request: a ratio, same run.

One stockade app in this process on 127.0.0.1 (an in-process fake npm upstream), one
27 KB tarball cached; then rounds alternate between the served-artifacts record on
(as shipped) and off (the pipeline's hook unset), each round ``--requests`` GETs of
the cached tarball by ``--concurrency`` clients. Prints the median req/s of each and
their ratio (target: recording within 5% of not recording), and how many entries the
record holds at the end (each request on must be there).

    python -m bench.served_overhead [--rounds N] [--requests N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector
from aiohttp.test_utils import TestServer

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.served import read_served
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm

TGZ = "/npm/bench-pkg/-/bench-pkg-1.0.0.tgz"


async def _round(session: ClientSession, url: str, requests: int, concurrency: int) -> float:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def main(rounds: int, requests: int, concurrency: int) -> None:
    registry = await FakeNpm().start()
    registry.publish("bench-pkg", "1.0.0", payload_bytes=27_000)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(Path(tmp) / "data")},
            "server": {"access_log": False},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}]},
            "logging": {"level": "WARNING"},
        })
        server = TestServer(make_app(settings, environ={}), host="127.0.0.1")
        await server.start_server()
        pipeline = server.app[SERVICES].pipeline
        hook = pipeline.on_served
        url = str(server.make_url(TGZ))
        figures: dict[str, list[float]] = {"on": [], "off": []}
        try:
            async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:
                await _round(session, url, 50, 4)  # fill the cache, warm the connections
                for _ in range(rounds):
                    for mode in ("off", "on"):
                        pipeline.on_served = hook if mode == "on" else None
                        figures[mode].append(await _round(session, url, requests, concurrency))
        finally:
            pipeline.on_served = hook
            await server.close()
            await registry.stop()
        recorded = sum(1 for _ in read_served(Path(tmp) / "data" / "served", since=0))
    on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
    print(f"warm 27 KB tarball, {requests} GETs x {rounds} rounds, {concurrency} clients")
    print(f"  record off (baseline): {off:8.0f} req/s")
    print(f"  record on:             {on:8.0f} req/s   ratio on/off {on / off:.3f}")
    print(f"  entries recorded: {recorded} (expected {50 + rounds * requests})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency))
