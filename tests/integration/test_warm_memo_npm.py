"""The warm-hit memo for npm packuments (full and abbreviated): a repeated request is
answered as rendered, keyed by what the rendering reads of the request, and ends as
the PyPI page's entry does (a reloaded policy, a changed document, a purge)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.state import SERVICES
from stockade.proxy.tokens import Role, create_token
from stockade.proxy.warmmemo import WarmMemo
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine

CORGI = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"


def _memo(client: TestClient) -> WarmMemo:
    memo = client.server.app[SERVICES].warm
    assert memo is not None
    return memo


@pytest.fixture
async def proxy(npm_registry: FakeNpm, aiohttp_client: Any, tmp_path: Path,
                engine: FakeEngine) -> tuple[TestClient, str]:
    """A proxy over ``npm_registry`` with an admin token (purges need one), and it."""
    tokens = tmp_path / "tokens.yaml"
    admin, _ = create_token(tokens, "ops", team=None, roles=[Role.ADMIN])
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm_registry.url}],
                "cache": {"metadata_ttl_s": 300}},
        "auth": {"tokens": str(tokens)},
        "server": {"warm_memo_s": 30},
    })
    client: TestClient = await aiohttp_client(
        make_app(settings, environ={}, engine_factory=lambda _s: engine))
    return client, admin


async def _get(client: TestClient, path: str = "/npm/demo",
               **headers: str) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    # (the client would ask for gzip by itself)
    resp = await client.get(path, headers={"Accept-Encoding": "identity", **headers},
                            auto_decompress=False)
    return resp.status, await resp.read(), resp.headers


async def _warm(client: TestClient, path: str = "/npm/demo", **headers: str) -> bytes:
    """Ask for ``path`` until the memo answers it (at most: fetched, remembered, from
    the memo); the body, the same each time."""
    memo = _memo(client)
    hits = memo.hits
    bodies = set()
    for _ in range(3):
        status, body, _ = await _get(client, path, **headers)
        assert status == 200
        bodies.add(body)
        if memo.hits > hits:
            break
    assert memo.hits == hits + 1
    assert len(bodies) == 1
    return bodies.pop()


def _tarball_urls(body: bytes) -> set[str]:
    return {v["dist"]["tarball"] for v in json.loads(body)["versions"].values()}


async def test_a_remembered_packument_is_the_packument_as_rendered_for_each_form(
        npm_registry: FakeNpm, proxy: tuple[TestClient, str]) -> None:
    npm_registry.publish("demo", "1.0.0")
    npm_registry.publish("@acme/tool", "2.0.0")
    client, _ = proxy
    memo = _memo(client)
    full = await _warm(client)
    assert "time" in json.loads(full)
    corgi = await _warm(client, Accept=CORGI)  # its own entry
    assert "time" not in json.loads(corgi)
    zipped = await _warm(client, **{"Accept-Encoding": "gzip"})
    assert gzip.decompress(zipped) == full
    other_host = await _warm(client, Host="mirror.example:8443")
    assert _tarball_urls(other_host) == {
        "http://mirror.example:8443/npm/demo/-/demo-1.0.0.tgz"}
    assert _tarball_urls(full) != _tarball_urls(other_host)
    scoped = await _warm(client, "/npm/@acme%2ftool")
    assert json.loads(scoped)["name"] == "@acme/tool"
    # and each of them once more, from the memo, as it was
    hits = memo.hits
    assert (await _get(client))[1] == full
    assert (await _get(client, Accept=CORGI))[1] == corgi
    assert (await _get(client, Host="mirror.example:8443"))[1] == other_host
    assert memo.hits == hits + 3


async def test_a_conditional_request_gets_its_304_from_the_memo_too(
        npm_registry: FakeNpm, proxy: tuple[TestClient, str]) -> None:
    npm_registry.publish("demo", "1.0.0")
    client, _ = proxy
    await _warm(client)
    etag = (await _get(client))[2]["ETag"]
    memo = _memo(client)
    hits = memo.hits
    answers = [await _get(client, **{"If-None-Match": etag}) for _ in range(3)]
    assert [(status, body) for status, body, _ in answers] == [(304, b"")] * 3
    assert all(headers["ETag"] == etag for _, _, headers in answers)
    assert memo.hits == hits + 2  # the first the slow way (and remembered), then the memo
    assert (await _get(client, **{"If-None-Match": '"other"'}))[0] == 200


async def test_a_policy_that_hides_a_version_or_refuses_the_name_is_in_force_at_once(
        npm_registry: FakeNpm, proxy: tuple[TestClient, str], engine: FakeEngine) -> None:
    npm_registry.publish("demo", "1.0.0")
    npm_registry.publish("demo", "1.1.0")
    client, _ = proxy
    assert set(json.loads(await _warm(client))["versions"]) == {"1.0.0", "1.1.0"}
    # a reloaded policy (a new revision) hides a version: rendered again
    client.server.app[SERVICES].gate.swap(FakeEngine(
        blocked_versions={("demo", "1.1.0")}, revision="fake-2"))
    status, body, headers = await _get(client)
    assert status == 200
    assert set(json.loads(body)["versions"]) == {"1.0.0"}
    assert headers["X-Stockade-Policy-Revision"] == "fake-2"
    # the same revision refusing the name: only deciding again per request sees it
    await _warm(client)
    swapped = client.server.app[SERVICES].gate.engine_for(None)
    assert isinstance(swapped, FakeEngine)
    swapped.blocked_names.add("demo")
    resp = await client.get("/npm/demo")
    assert resp.status == 403
    assert "(rule deny-list)" in (await resp.json())["error"]


async def test_a_changed_document_is_served_once_it_is_read_again(
        npm_registry: FakeNpm, proxy: tuple[TestClient, str]) -> None:
    npm_registry.publish("demo", "1.0.0")
    client, _ = proxy
    await _warm(client)
    npm_registry.publish("demo", "2.0.0")
    metacache = client.server.app[SERVICES].admission.metacache
    now = [_memo(client).now() + 301]  # past the packument's TTL (300 s)
    metacache._clock = lambda: now[0]
    hits = _memo(client).hits
    status, body, _ = await _get(client)
    assert status == 200
    assert set(json.loads(body)["versions"]) == {"1.0.0", "2.0.0"}
    assert _memo(client).hits == hits


async def test_a_purged_packument_is_fetched_again(
        npm_registry: FakeNpm, proxy: tuple[TestClient, str]) -> None:
    npm_registry.publish("demo", "1.0.0")
    client, admin = proxy
    await _warm(client)
    asked = len([r for r in npm_registry.requests if r[1] == "/demo"])
    resp = await client.delete("/_stockade/admin/cache/npm/demo",
                               headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200
    hits = _memo(client).hits
    status, _, headers = await _get(client)
    assert status == 200
    assert headers["X-Stockade-Cache"] == "miss"
    assert _memo(client).hits == hits
    assert len([r for r in npm_registry.requests if r[1] == "/demo"]) == asked + 1
