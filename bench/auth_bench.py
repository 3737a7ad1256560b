"""What checking a token costs a warm request: a ratio to the same request anonymous.

One stockade application in process, a fake PyPI upstream on 127.0.0.1, a
project page fetched once to warm the caches; then, in passes alternating
within each round, in an order rotated each round (this machine's load drifts
more than they differ), the same
warm page ``--requests`` times, sequentially over one keep-alive connection:

  anonymous   no credential (the baseline), a tokens file configured;
  basic       pip's form: ``Authorization: Basic`` with the token as the password;
  bearer      npm's form: ``Authorization: Bearer``;
  team        basic, with a token whose team has a policy section of its own.

Prints the median of ``--rounds`` per case as requests per second and as a ratio to
anonymous.

    python -m bench.auth_bench [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.tokens import Role, create_token
from testbed.fakes.pypi_upstream import FakePyPI


async def _run(requests: int, rounds: int) -> None:
    upstream = FakePyPI()
    upstream.add_wheel("bench-lib", "1.0")
    upstream.add_wheel("bench-lib", "2.0")
    await upstream.start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokens = root / "tokens.yaml"
        plain, _ = create_token(tokens, "ci", team=None, roles=[Role.CLIENT])
        teamed, _ = create_token(tokens, "pay", team="payments", roles=[Role.CLIENT])
        policy = root / "policy.yaml"
        policy.write_text("teams: {payments: {rules: {cooldown: {min_age: 1d}}}}\n")
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(root / "data")}, "policy": {"file": str(policy)},
            "pypi": {"upstreams": [{"name": "pypi", "url": upstream.url}]},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "auth": {"tokens": str(tokens)},
        })
        server = TestServer(make_app(settings, environ={}), host="127.0.0.1")
        await server.start_server()

        def basic(token: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(
                f"__token__:{token}".encode()).decode()}

        cases = {"anonymous": {}, "basic": basic(plain),
                 "bearer": {"Authorization": f"Bearer {plain}"}, "team": basic(teamed)}
        url = str(server.make_url("/pypi/simple/bench-lib/"))
        rates: dict[str, list[float]] = {c: [] for c in cases}
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1)) as session:
            for headers in cases.values():  # warm every cache each case uses
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200, resp.status
                    await resp.read()
            order = list(cases)
            for _ in range(rounds):
                order = order[1:] + order[:1]  # no case always first after another
                for case in order:
                    headers = cases[case]
                    started = time.perf_counter()
                    for _ in range(requests):
                        async with session.get(url, headers=headers) as resp:
                            await resp.read()
                    rates[case].append(requests / (time.perf_counter() - started))
        await server.close()
    await upstream.stop()
    base = statistics.median(rates["anonymous"])
    print(f"warm /pypi/simple/ page, {requests} sequential requests, median of {rounds} rounds")
    for case, values in rates.items():
        rate = statistics.median(values)
        print(f"  {case:10s} {rate:8.0f} req/s   {rate / base:5.2f}x anonymous")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(_run(args.requests, args.rounds))


if __name__ == "__main__":
    main()
