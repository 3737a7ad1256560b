"""Tokens, route groups and per-team policy through the real application.

The proxy runs with its real policy engine (a policy file with a ``teams``
section) in front of a fake PyPI; requests carry tokens as pip (Basic) and
npm (Bearer) send them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.cli import main
from stockade.proxy.decisionlog import verify
from stockade.proxy.tokens import Role, create_token, revoke_token
from testbed.fakes.pypi_upstream import FakePyPI

POLICY = {
    "rules": {
        "lists": {
            "allow": [{"ecosystem": "pypi", "name": "acc-lib", "reason": "reviewed",
                       "tags": ["pci-reviewed"]}],
            "deny": [{"ecosystem": "pypi", "name": "acc-bad", "reason": "known bad"}],
        },
    },
    "teams": {
        "payments": {
            "required_tags": ["pci-reviewed"],
            # a team's allow cannot lift the global deny
            "allow": [{"ecosystem": "pypi", "name": "acc-bad", "reason": "we like it"}],
        },
        "tools": {
            "deny": [{"ecosystem": "pypi", "name": "acc-lib", "versions": "<2.0",
                      "reason": "too old for tools"}],
        },
    },
}


def basic(token: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Access:
    """A proxy with tokens for three callers and the files around it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tokens_file = tmp_path / "tokens.yaml"
        self.payments, _ = create_token(self.tokens_file, "pay-ci", team="payments",
                                        roles=[Role.CLIENT])
        self.tools, _ = create_token(self.tokens_file, "tools-ci", team="tools",
                                     roles=[Role.CLIENT])
        self.admin, _ = create_token(self.tokens_file, "ops", team=None, roles=[Role.ADMIN])
        self.metrics, _ = create_token(self.tokens_file, "prom", team=None,
                                       roles=[Role.METRICS])
        self.policy_file = tmp_path / "policy.yaml"
        self.policy_file.write_text(yaml.safe_dump(POLICY))


@pytest.fixture
def access(tmp_path: Path) -> Access:
    return Access(tmp_path)


@pytest.fixture
async def upstream(fake_pypi: FakePyPI) -> FakePyPI:
    fake_pypi.add_wheel("acc-lib", "1.0")
    fake_pypi.add_wheel("acc-lib", "2.0")
    fake_pypi.add_wheel("acc-util", "1.0")
    fake_pypi.add_wheel("acc-bad", "1.0")
    return fake_pypi


async def _proxy(aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
                 **anonymous: bool) -> TestClient:
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": upstream.url, "retries": 0}]},
        "npm": {"upstreams": [{"name": "npmjs", "url": "http://127.0.0.1:9/", "retries": 0}]},
        "maven": {"upstreams": []},
        "policy": {"file": str(access.policy_file)},
        "auth": {"tokens": str(access.tokens_file), "anonymous": anonymous,
                 "reload_check_s": 0.05},
    })
    client: TestClient = await aiohttp_client(make_app(settings, environ={}))
    return client


def _file_url(upstream: FakePyPI, name: str, version: str) -> str:
    dist = next(d for d in upstream.projects[name] if d.version == version)
    return f"/pypi/files/{name}/{dist.filename}"


async def test_anonymous_by_default_and_a_wrong_token_is_401(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream)
    assert (await client.get("/pypi/simple/acc-util/")).status == 200
    assert (await client.get("/metrics")).status == 200
    wrong = await client.get("/pypi/simple/acc-util/", headers=basic("stk_00000000_" + "A" * 43))
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="stockade"'
    assert "not valid" in wrong.reason
    npm = await client.get("/npm/left-pad", headers=bearer("not-a-token"))
    assert npm.status == 401
    assert npm.headers["WWW-Authenticate"] == 'Bearer realm="stockade"'
    assert "not valid" in (await npm.json())["error"]
    # the admin group is never anonymous by default
    assert (await client.get("/_stockade/reload")).status == 401
    assert (await client.get("/healthz")).status == 200


async def test_without_a_tokens_file_credentials_are_ignored(
    aiohttp_client: Any, tmp_path: Path, upstream: FakePyPI,
) -> None:
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": upstream.url, "retries": 0}]},
        "npm": {"upstreams": []}, "maven": {"upstreams": []},
    })
    client = await aiohttp_client(make_app(settings, environ={}))
    resp = await client.get("/pypi/simple/acc-util/", headers=basic("for-another-registry"))
    assert resp.status == 200
    # the admin group stays closed: no token can open it
    assert (await client.get("/_stockade/reload", headers=basic("x"))).status == 401


async def test_private_groups_need_the_right_role(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream,
                          pypi=False, npm=False, explain=False, metrics=False)
    missing = await client.get("/pypi/simple/acc-util/")
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="stockade"'
    assert "token is required" in missing.reason
    assert (await client.get("/npm/left-pad")).headers["WWW-Authenticate"].startswith("Bearer")
    # pip's index URL form: the token as the password, or as the user with no password
    assert (await client.get("/pypi/simple/acc-util/", headers=basic(access.tools))).status == 200
    assert (await client.get("/pypi/simple/acc-util/",
                             headers=basic("", user=access.tools))).status == 200
    assert (await client.get("/pypi/simple/acc-util/", headers=bearer(access.tools))).status == 200
    # explain, when private, is the admins'
    assert (await client.get("/_stockade/explain/pypi/acc-util")).status == 401
    assert (await client.get("/_stockade/explain/pypi/acc-util",
                             headers=basic(access.tools))).status == 403
    assert (await client.get("/_stockade/explain/pypi/acc-util",
                             headers=basic(access.admin))).status == 200
    # /metrics takes a Prometheus bearer token with the metrics role
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=bearer(access.tools))).status == 403
    scraped = await client.get("/metrics", headers=bearer(access.metrics))
    assert scraped.status == 200
    text = await scraped.text()
    assert 'stockade_auth_refusals_total{group="metrics",reason="role"} 1.0' in text
    assert 'stockade_auth_refusals_total{group="pypi",reason="missing"} 1.0' in text
    # a metrics token pulls nothing
    assert (await client.get("/pypi/simple/acc-util/",
                             headers=basic(access.metrics))).status == 403


async def test_a_revoked_token_is_refused_once_the_file_is_reloaded(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream, pypi=False)
    assert (await client.get("/pypi/simple/acc-util/", headers=basic(access.tools))).status == 200
    assert revoke_token(access.tokens_file, "tools-ci")
    for _ in range(400):
        status = (await client.get("/pypi/simple/acc-util/", headers=basic(access.tools))).status
        if status == 401:
            break
        await asyncio.sleep(0.05)
    assert status == 401
    assert (await client.get("/pypi/simple/acc-util/",
                             headers=basic(access.payments))).status == 200


async def test_a_broken_tokens_file_keeps_the_tokens_in_force(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream, pypi=False)
    access.tokens_file.write_text("tokens: [{id: nope}]\n")
    # a new token written after the bad file is picked up once the file is valid again
    access.tokens_file.unlink()
    fresh, _ = create_token(access.tokens_file, "fresh", team=None, roles=[Role.CLIENT])
    for _ in range(400):
        if (await client.get("/pypi/simple/acc-util/", headers=basic(fresh))).status == 200:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the rewritten tokens file was never loaded")
    assert (await client.get("/pypi/simple/acc-util/", headers=basic(access.tools))).status == 401


async def test_team_policy_is_the_global_one_plus_its_own(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream)
    util = _file_url(upstream, "acc-util", "1.0")
    # payments requires pci-reviewed: acc-util is refused to it, served to tools
    refused = await client.get(util, headers=basic(access.payments))
    assert refused.status == 403
    assert refused.reason.startswith("Blocked by stockade:")
    assert "pci-reviewed" in refused.reason
    assert "team payments" in refused.reason
    assert (await client.get(util, headers=basic(access.tools))).status == 200
    assert (await client.get(util)).status == 200  # anonymous: the global policy
    # the global allow entry carries the tag: payments gets acc-lib
    lib2 = _file_url(upstream, "acc-lib", "2.0")
    assert (await client.get(lib2, headers=basic(access.payments))).status == 200
    # a team's allow never lifts a global deny
    bad = await client.get(_file_url(upstream, "acc-bad", "1.0"), headers=basic(access.payments))
    assert bad.status == 403
    assert "deny list" in bad.reason


async def test_rendered_pages_are_filtered_per_team(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream)
    lib1 = next(d.filename for d in upstream.projects["acc-lib"] if d.version == "1.0")

    async def page(headers: dict[str, str]) -> str:
        resp = await client.get("/pypi/simple/acc-lib/", headers=headers)
        assert resp.status == 200
        return await resp.text()

    # in every order: a page kept for one team is never served to another
    assert lib1 in await page(basic(access.payments))
    assert lib1 not in await page(basic(access.tools))
    assert lib1 in await page(basic(access.payments))
    assert lib1 in await page({})
    assert lib1 not in await page(basic(access.tools))
    hidden = await client.get("/pypi/simple/acc-lib/", headers=basic(access.tools))
    assert hidden.headers["X-Stockade-Filtered"].startswith("1 versions hidden")
    explained = await (await client.get("/_stockade/explain/pypi/acc-lib",
                                        headers=basic(access.tools))).json()
    assert explained["team"] == "tools"
    assert list(explained["versions"]["hidden"]) == ["1.0"]


async def test_the_decision_log_names_the_caller_and_team(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream)
    util = _file_url(upstream, "acc-util", "1.0")
    assert (await client.get(util, headers=basic(access.payments))).status == 403
    assert (await client.get(_file_url(upstream, "acc-bad", "1.0"))).status == 403
    await client.close()  # the log's writer flushes on close
    path = tmp_path / "data" / "decisions.jsonl"
    assert verify(path).ok  # the new fields are inside the hash chain
    text = path.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    mine = [r for r in records if r["name"] == "acc-util"]
    assert mine
    assert mine[-1]["identity"] == "pay-ci"
    assert mine[-1]["team"] == "payments"
    anonymous = [r for r in records if r["name"] == "acc-bad"]
    assert anonymous
    assert "identity" not in anonymous[-1]
    for token in (access.payments, access.tools, access.admin, access.metrics):
        assert token not in text
        assert token.split("_", 2)[2] not in text


async def test_check_server_sends_its_token_to_a_private_explain(
    aiohttp_client: Any, tmp_path: Path, access: Access, upstream: FakePyPI,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await _proxy(aiohttp_client, tmp_path, access, upstream, explain=False)
    server = str(client.make_url("/"))
    monkeypatch.delenv("STOCKADE_TOKEN", raising=False)
    refused = await asyncio.to_thread(main, ["check", "pypi", "acc-util", "--server", server])
    assert refused == 2
    assert "HTTP 401" in capsys.readouterr().err
    monkeypatch.setenv("STOCKADE_TOKEN", access.admin)
    assert await asyncio.to_thread(main, ["check", "pypi", "acc-util", "--server", server]) == 0
    assert "allow" in capsys.readouterr().out


async def test_npm_packuments_are_filtered_per_team(
    aiohttp_client: Any, tmp_path: Path, access: Access,
) -> None:
    from testbed.fakes.npm_upstream import FakeNpm

    registry = await FakeNpm().start()
    try:
        registry.publish("acc-widget", "1.0.0")
        registry.publish("acc-widget", "2.0.0")
        policy = {"teams": {"tools": {"deny": [
            {"ecosystem": "npm", "name": "acc-widget", "versions": "2.0.0",
             "reason": "not for tools"}]}}}
        access.policy_file.write_text(yaml.safe_dump(policy))
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url, "retries": 0}]},
            "policy": {"file": str(access.policy_file)},
            "auth": {"tokens": str(access.tokens_file)},
        })
        client = await aiohttp_client(make_app(settings, environ={}))

        async def versions(headers: dict[str, str], corgi: bool = False) -> set[str]:
            accept = {"Accept": "application/vnd.npm.install-v1+json"} if corgi else {}
            resp = await client.get("/npm/acc-widget", headers={**headers, **accept})
            assert resp.status == 200
            return set((await resp.json())["versions"])

        both = {"1.0.0", "2.0.0"}
        assert await versions(bearer(access.payments)) == both
        assert await versions(bearer(access.tools)) == {"1.0.0"}
        assert await versions({}) == both
        assert await versions(bearer(access.tools), corgi=True) == {"1.0.0"}
        assert await versions(bearer(access.payments), corgi=True) == both
        assert await versions(bearer(access.tools)) == {"1.0.0"}
        refused = await client.get("/npm/acc-widget/2.0.0", headers=bearer(access.tools))
        assert refused.status == 403
        assert "not for tools" in (await refused.json())["error"]
        tarball = await client.get("/npm/acc-widget/-/acc-widget-2.0.0.tgz",
                                   headers=bearer(access.tools))
        assert tarball.status == 403
        assert (await client.get("/npm/acc-widget/-/acc-widget-2.0.0.tgz",
                                 headers=bearer(access.payments))).status == 200
    finally:
        await registry.stop()
