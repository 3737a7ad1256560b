"""Who is affected: new intel synced while the proxy runs newly refuses a cached version; the
decision log records it and a loopback webhook receiver is told, once, with a valid
signature, who fetched it. A failing receiver is retried; a stalled one never slows a client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from stockade.config.load import load_settings
from stockade.proxy.app import REEVALUATOR, make_app
from stockade.proxy.identity import Identity, set_identity
from stockade.proxy.served import read_served
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.static import StaticHost
from testbed.fakes.webhook import WebhookReceiver
from testbed.osv_export import export_zip, serve_export

FIXTURES = Path(__file__).parents[1] / "fixtures" / "osv"
SECRET = "hook-secret"  # noqa: S105 (a test value)
MAL = {
    "id": "MAL-2099-0003", "modified": "2099-01-01T00:00:00Z",
    "summary": "Malicious code in demo-widget (npm)",
    "affected": [{"package": {"ecosystem": "npm", "name": "demo-widget"},
                  "versions": ["1.0.1"]}],
}
TGZ = "/npm/demo-widget/-/demo-widget-1.0.1.tgz"


@web.middleware
async def fake_tokens(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for token auth: ``X-Test-Identity: name/team`` sets the identity."""
    given = request.headers.get("X-Test-Identity")
    if given:
        name, team = given.split("/")
        set_identity(request, Identity(name, team))
    response: web.StreamResponse = await handler(request)
    return response


async def wait_for(condition: Any, limit_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


class World:
    def __init__(self, tmp: Path, npm: FakeNpm, bucket: StaticHost,
                 receiver: WebhookReceiver) -> None:
        self.tmp, self.npm, self.bucket, self.receiver = tmp, npm, bucket, receiver

    async def proxy(self, aiohttp_client: Any) -> Any:
        (self.tmp / "intel").mkdir(exist_ok=True)
        policy = self.tmp / "policy.yaml"
        policy.write_text("rules:\n  osv: {paths: [intel], min_severity: critical}\n")
        cfg = self.tmp / "stockade.yaml"
        cfg.write_text(yaml.safe_dump({
            "storage": {"path": str(self.tmp / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": self.npm.url}]},
            "policy": {"file": str(policy), "reload_check_s": 0.05},
            "osv": {"url": self.bucket.url, "ecosystems": ["npm"], "interval": 0.1},
            "notify": {"webhook": {"url": self.receiver.url, "secret_env": "HOOK_SECRET",
                                   "window": 3600, "retry_base_s": 0.05,
                                   "max_attempts": 4}},
        }))
        app = make_app(load_settings(cfg, environ={}), environ={"HOOK_SECRET": SECRET})
        app.middlewares.append(fake_tokens)
        client = await aiohttp_client(app)
        metrics = client.app[SERVICES].metrics.registry
        await wait_for(lambda: (metrics.get_sample_value(
            "stockade_osv_syncs_total", {"ecosystem": "npm", "result": "updated"}) or 0) >= 1)
        return client

    def served(self) -> list[Any]:
        return list(read_served(self.tmp / "data" / "served", since=0))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    npm = await FakeNpm().start()
    npm.publish("demo-widget", "1.0.0")
    npm.publish("demo-widget", "1.0.1")
    serve_export(tmp_path / "bucket", "npm", export_zip(FIXTURES, "npm"))
    bucket = await StaticHost(root=tmp_path / "bucket").start()
    receiver = await WebhookReceiver().start()
    try:
        yield World(tmp_path, npm, bucket, receiver)
    finally:
        await receiver.stop()
        await bucket.stop()
        await npm.stop()


async def fetch_as(client: Any, who: str | None) -> int:
    headers = {"X-Test-Identity": who} if who else {}
    response = await client.get(TGZ, headers=headers)
    await response.read()
    return int(response.status)


async def test_new_malware_intel_refuses_the_cached_version_and_names_who_fetched_it(
        aiohttp_client: Any, world: World) -> None:
    client = await world.proxy(aiohttp_client)
    assert await fetch_as(client, "alice/payments") == 200
    assert await fetch_as(client, "bob/search") == 200
    assert await fetch_as(client, None) == 200  # anonymous: known by address
    assert (await client.get("/npm/demo-widget/-/demo-widget-1.0.0.tgz")).status == 200
    await wait_for(lambda: len(world.served()) == 4)  # written off the hot path, batched
    assert {(s.identity, s.team) for s in world.served()} == {
        ("alice", "payments"), ("bob", "search"), (None, None)}

    serve_export(world.bucket.root, "npm", export_zip(FIXTURES, "npm", MAL))
    await wait_for(lambda: len(world.receiver.deliveries) >= 1)
    assert await fetch_as(client, "alice/payments") == 403  # the cached copy is refused
    reevaluator = client.app[REEVALUATOR]
    await wait_for(lambda: reevaluator.passes >= 1)  # the pass is over: nothing more comes

    (delivery,) = world.receiver.deliveries  # one notification, only the refused version
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Stockade-Signature"] == expected
    assert delivery.headers["X-Stockade-Event"] == "artifact.newly_refused"
    body = json.loads(delivery.body)
    assert body["artifact"]["name"] == "demo-widget"
    assert body["artifact"]["version"] == "1.0.1"
    assert len(body["artifact"]["sha256"]) == 64
    assert body["rule"] == "osv"
    assert "MAL-2099-0003" in body["reason"]
    assert body["teams"] == ["payments", "search"]
    fetched = {(f["identity"], f["team"], f["client"], f["count"]) for f in body["fetched_by"]}
    assert fetched == {("alice", "payments", "127.0.0.1", 1), ("bob", "search", "127.0.0.1", 1),
                       (None, None, "127.0.0.1", 1)}

    log = (world.tmp / "data" / "decisions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in log]
    reevaluated = [r for r in records if r.get("request_id") == "re-evaluation"]
    assert len(reevaluated) == 1
    assert "demo-widget" in json.dumps(reevaluated[0])
    assert "127.0.0.1,alice,bob" in json.dumps(reevaluated[0])


async def test_a_failing_receiver_is_retried_and_a_stalled_one_never_slows_clients(
        aiohttp_client: Any, world: World) -> None:
    client = await world.proxy(aiohttp_client)
    assert await fetch_as(client, "alice/payments") == 200
    await wait_for(lambda: len(world.served()) == 1)
    world.receiver.fail = 2
    world.receiver.stall = True
    serve_export(world.bucket.root, "npm", export_zip(FIXTURES, "npm", MAL))
    await wait_for(lambda: len(world.receiver.deliveries) == 1)
    # The receiver holds the first delivery open: clients are served all the while.
    for _ in range(5):
        assert await fetch_as(client, "bob/search") == 403
        assert (await client.get("/npm/demo-widget/-/demo-widget-1.0.0.tgz")).status == 200
    assert len(world.receiver.deliveries) == 1  # still the one stalled delivery
    world.receiver.stall = False
    world.receiver.release.set()
    await wait_for(lambda: len(world.receiver.deliveries) == 3)  # 500, 500, then 204
    metrics = client.app[SERVICES].metrics.registry
    await wait_for(lambda: metrics.get_sample_value(
        "stockade_notifications_total", {"result": "delivered"}) == 1)
    assert metrics.get_sample_value("stockade_notifications_total", {"result": "retried"}) == 2
    ids = {d.headers["X-Stockade-Delivery"] for d in world.receiver.deliveries}
    assert len(ids) == 1  # the same delivery, retried
    assert len({d.body for d in world.receiver.deliveries}) == 1
