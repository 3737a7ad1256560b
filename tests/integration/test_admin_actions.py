"""The admin actions: reload the policy now, purge a package from the cache.

The application is stockade's own with a tokens file (an admin, a client), in
front of the fake PyPI, whose request log shows what was fetched again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.policy.model import Ecosystem, PackageRef
from stockade.proxy.app import REEVALUATOR, decision_log_path, make_app
from stockade.proxy.tokens import Role, create_token
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI

Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Setup:
    def __init__(self, tmp_path: Path, upstream: FakePyPI) -> None:
        self.tokens_file = tmp_path / "tokens.yaml"
        self.admin, _ = create_token(self.tokens_file, "ops", team=None, roles=[Role.ADMIN])
        self.client, _ = create_token(self.tokens_file, "ci", team="tools",
                                      roles=[Role.CLIENT])
        self.policy = tmp_path / "policy.yaml"
        self.policy.write_text("rules: {lists: {deny: []}}\n")
        self.settings: Settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": [{"name": "pypi", "url": upstream.url, "retries": 0}],
                     "cache": {"metadata_ttl_s": 3600}},
            "npm": {"upstreams": [{"name": "npmjs", "url": "http://127.0.0.1:9/",
                                   "retries": 0}]},
            "maven": {"upstreams": []},
            # no file watching: only the admin request can put a new policy in force
            "policy": {"file": str(self.policy), "reload_check_s": 0},
            "auth": {"tokens": str(self.tokens_file)},
        })


@pytest.fixture
def upstream(fake_pypi: FakePyPI) -> FakePyPI:
    fake_pypi.add_wheel("acc-lib", "1.0")
    fake_pypi.add_wheel("acc-lib", "2.0")
    fake_pypi.add_wheel("acc-other", "1.0")
    return fake_pypi


@pytest.fixture
def setup(tmp_path: Path, upstream: FakePyPI) -> Setup:
    return Setup(tmp_path, upstream)


async def _client(aiohttp_client: Any, setup: Setup) -> Client:
    client: Client = await aiohttp_client(make_app(setup.settings, environ={}))
    return client


def _file(upstream: FakePyPI, name: str, version: str) -> tuple[str, str]:
    dist = next(d for d in upstream.projects[name] if d.version == version)
    return f"/pypi/files/{name}/{dist.filename}", dist.filename


async def _get(client: Client, path: str, status: int = 200) -> None:
    resp = await client.get(path)
    assert resp.status == status, (path, resp.status, await resp.text())
    await resp.read()


async def test_the_actions_need_an_admin_token(aiohttp_client: Any, setup: Setup) -> None:
    client = await _client(aiohttp_client, setup)
    for method, path in (("POST", "/_stockade/admin/reload"),
                         ("POST", "/_stockade/admin/cache/pypi/acc-lib"),
                         ("DELETE", "/_stockade/admin/cache/pypi/acc-lib/1.0")):
        anonymous = await client.request(method, path)
        assert anonymous.status == 401, path
        assert "WWW-Authenticate" in anonymous.headers
        member = await client.request(method, path, headers=bearer(setup.client))
        assert member.status == 403, path
        assert "may not use admin" in (await member.json())["error"]
        wrong = await client.request(method, path, headers=bearer(setup.admin + "x"))
        assert wrong.status == 401, path
        ok = await client.request(method, path, headers=bearer(setup.admin))
        assert ok.status == 200, (path, await ok.text())


async def test_reload_applies_a_new_policy_or_keeps_the_one_in_force(
    aiohttp_client: Any, setup: Setup, upstream: FakePyPI,
) -> None:
    client = await _client(aiohttp_client, setup)
    path, _ = _file(upstream, "acc-lib", "1.0")
    await _get(client, path)
    before = (await client.get("/pypi/simple/acc-lib/")).headers["X-Stockade-Policy-Revision"]

    setup.policy.write_text(yaml.safe_dump({"rules": {"lists": {"deny": [
        {"ecosystem": "pypi", "name": "acc-lib", "reason": "pulled by ops"}]}}}))
    resp = await client.post("/_stockade/admin/reload", headers=bearer(setup.admin))
    assert resp.status == 200
    applied = await resp.json()
    assert applied["applied"] is True and applied["error"] is None
    assert applied["revision"] != before
    assert applied["reason"] == "admin request by ops"
    assert applied["workers"]["total"] == 1
    await _get(client, path, 403)

    setup.policy.write_text("rules: {lists: {deny: [{ecosystem: pypi}]}}\n")
    resp = await client.post("/_stockade/admin/reload", headers=bearer(setup.admin))
    assert resp.status == 422
    rejected = await resp.json()
    assert rejected["applied"] is False
    assert "rules.lists.deny.0" in rejected["error"]
    assert rejected["revision"] == applied["revision"]  # the old one stays in force
    await _get(client, path, 403)


async def _log(setup: Setup, rule: str) -> list[dict[str, Any]]:
    path = decision_log_path(setup.settings)
    for _ in range(400):  # written off the loop: poll until it is there
        if path.exists():
            found = [r for r in map(json.loads, path.read_text().splitlines())
                     if r["rule"] == rule]
            if found:
                return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {rule} record in the decision log")


async def test_a_purge_removes_documents_and_files_and_the_next_request_fetches(
    aiohttp_client: Any, setup: Setup, upstream: FakePyPI,
) -> None:
    client = await _client(aiohttp_client, setup)
    one, one_name = _file(upstream, "acc-lib", "1.0")
    two, two_name = _file(upstream, "acc-lib", "2.0")
    other, other_name = _file(upstream, "acc-other", "1.0")
    for path in ("/pypi/simple/acc-lib/", one, two, other, "/pypi/simple/acc-lib/", one):
        await _get(client, path)
    assert upstream.count("/simple/acc-lib/") == 1 and upstream.count(one_name) == 1

    resp = await client.delete("/_stockade/admin/cache/pypi/acc-lib/1.0",
                               headers=bearer(setup.admin))
    assert resp.status == 200
    body = await resp.json()
    assert (body["ecosystem"], body["name"], body["version"]) == ("pypi", "acc-lib", "1.0")
    assert [f["filename"] for f in body["files"]] == [one_name]
    assert body["blobs_removed"] == 1 and body["bytes_removed"] > 0
    assert any(u.endswith("/simple/acc-lib/") for u in body["metadata_documents"])
    assert body["purged_by"] == "ops"

    await _get(client, one)
    await _get(client, two)
    await _get(client, "/pypi/simple/acc-lib/")
    assert upstream.count(one_name) == 2  # fetched again
    assert upstream.count(two_name) == 1  # another version: kept
    assert upstream.count("/simple/acc-lib/") == 2

    resp = await client.post("/_stockade/admin/cache/pypi/ACC_Lib",  # any spelling
                             headers=bearer(setup.admin))
    body = await resp.json()
    assert sorted(f["filename"] for f in body["files"]) == sorted([one_name, two_name])
    assert body["blobs_removed"] == 2
    for path in (one, two, other):
        await _get(client, path)
    assert (upstream.count(one_name), upstream.count(two_name),
            upstream.count(other_name)) == (3, 2, 1)

    records = await _log(setup, "purge")
    assert records[0]["identity"] == "ops"
    assert records[0]["client"] == "stockade admin"
    assert (records[0]["name"], records[0]["version"]) == ("acc-lib", "1.0")
    assert "1 files" in records[0]["reason"] and "by ops" in records[0]["reason"]
    assert setup.admin not in decision_log_path(setup.settings).read_text()


async def test_a_purge_in_one_process_reaches_the_documents_another_holds(
    aiohttp_client: Any, setup: Setup, upstream: FakePyPI,
) -> None:
    # two applications over one storage folder, as two worker processes are
    first = await _client(aiohttp_client, setup)
    second = await _client(aiohttp_client, setup)
    one, one_name = _file(upstream, "acc-lib", "1.0")
    for path in ("/pypi/simple/acc-lib/", one, "/pypi/simple/acc-lib/", one):
        await _get(first, path)
    assert upstream.count("/simple/acc-lib/") == 1  # the second time from memory

    resp = await second.post("/_stockade/admin/cache/pypi/acc-lib",
                             headers=bearer(setup.admin))
    assert resp.status == 200
    await _get(first, "/pypi/simple/acc-lib/")
    await _get(first, one)
    assert upstream.count("/simple/acc-lib/") == 2
    assert upstream.count(one_name) == 2


async def test_a_purge_reaches_the_documents_the_re_decisions_hold(
    aiohttp_client: Any, setup: Setup, upstream: FakePyPI,
) -> None:
    """The first worker's re-decisions of what was served read metadata through an
    offline admission path with its own documents in memory: a purge drops those too."""
    first = await _client(aiohttp_client, setup)
    second = await _client(aiohttp_client, setup)
    one, _ = _file(upstream, "acc-lib", "1.0")
    for path in ("/pypi/simple/acc-lib/", one):
        await _get(first, path)
    offline = first.server.app[REEVALUATOR].admission
    await offline.facts(PackageRef(Ecosystem.PYPI, "acc-lib", "1.0"))
    assert offline.metacache.held > 0

    resp = await second.post("/_stockade/admin/cache/pypi/acc-lib",
                             headers=bearer(setup.admin))
    assert resp.status == 200
    hook = offline.metacache.before_get
    assert hook is not None
    hook()  # what its next look-up does first
    assert offline.metacache.held == 0


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/_stockade/admin/cache/cargo/serde", 400, "unknown ecosystem"),
    ("/_stockade/admin/cache/pypi/not%20a%20name", 400, "not a valid"),
    ("/_stockade/admin/cache/npm/@scope", 400, "@scope/name"),
    ("/_stockade/admin/cache/pypi/a/1.0/extra", 400, "<name>[/<version>]"),
])
async def test_a_bad_purge_is_a_clear_400(aiohttp_client: Any, setup: Setup, path: str,
                                          status: int, says: str) -> None:
    client = await _client(aiohttp_client, setup)
    resp = await client.post(path, headers=bearer(setup.admin))
    assert resp.status == status
    assert says in (await resp.json())["error"]


@pytest.fixture
async def fake_npm() -> AsyncIterator[FakeNpm]:
    registry = FakeNpm()
    await registry.start()
    yield registry
    await registry.stop()


async def test_a_scoped_npm_purge_drops_its_rendered_packument_and_tarballs(
    aiohttp_client: Any, tmp_path: Path, fake_npm: FakeNpm,
) -> None:
    fake_npm.publish("@acme/ui", "1.0.0")
    fake_npm.publish("@types/node", "20.0.0")
    fake_npm.publish("node", "1.0.0")
    tokens = tmp_path / "tokens.yaml"
    admin, _ = create_token(tokens, "ops", team=None, roles=[Role.ADMIN])
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": fake_npm.url, "retries": 0}],
                "cache": {"metadata_ttl_s": 3600}},
        "auth": {"tokens": str(tokens)},
    })
    client: Client = await aiohttp_client(make_app(settings, environ={}))
    json_accept = {"Accept": "application/json"}
    tarball = "/npm/@acme/ui/-/ui-1.0.0.tgz"
    for _ in range(2):
        for path in ("/npm/@acme%2fui", "/npm/@types%2fnode", "/npm/node"):
            resp = await client.get(path, headers=json_accept)
            assert resp.status == 200, path
            await resp.read()
        await _get(client, tarball)
    assert (fake_npm.count("/@acme/ui"), fake_npm.count("/ui-1.0.0.tgz")) == (1, 1)

    resp = await client.delete("/_stockade/admin/cache/npm/@acme/ui",
                               headers=bearer(admin))
    body = await resp.json()
    assert resp.status == 200, body
    assert [f["filename"] for f in body["files"]] == ["ui-1.0.0.tgz"]
    assert len(body["metadata_documents"]) == 1  # neither @types/node nor node
    resp = await client.delete("/_stockade/admin/cache/npm/node", headers=bearer(admin))
    assert len((await resp.json())["metadata_documents"]) == 1

    for path in ("/npm/@acme%2fui", "/npm/@types%2fnode"):
        resp = await client.get(path, headers=json_accept)
        assert resp.status == 200
        await resp.read()
    await _get(client, tarball)
    assert (fake_npm.count("/@acme/ui"), fake_npm.count("/ui-1.0.0.tgz")) == (2, 2)
    assert fake_npm.count("/@types/node") == 1  # a scoped "node": not purged
