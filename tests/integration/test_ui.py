"""The web page at ``/_stockade/ui/``: each page, its headers, its admin action."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from stockade.policy import approvals
from stockade.policy.model import Ecosystem
from stockade.proxy.identity import Identity
from stockade.proxy.ui.views import UI
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI
from tests.integration.ui_support import ADMIN, DEVELOPER, ui_app, ui_settings

PAGES = ("", "refusals", "explain", "explain?ecosystem=pypi&name=demo", "cache",
         "approve")


async def client_for(aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI,
                     engine: FakeEngine, **extra: Any) -> Any:
    settings = ui_settings(tmp_path, pypi_url=fake_pypi.url, **extra)
    return await aiohttp_client(ui_app(settings, lambda _s: engine))


def reads_approvals(tmp_path: Path) -> dict[str, Any]:
    """The ``policy`` settings of a policy that reads ``tmp_path/approvals.yaml``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    return {"file": str(policy), "reload_check_s": 0}


def token(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def test_every_page_has_a_strict_csp_and_no_script(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    fake_pypi.add_wheel("demo", "1.0")
    client = await client_for(aiohttp_client, tmp_path, fake_pypi, FakeEngine())
    for page in PAGES:
        resp = await client.get(f"/_stockade/ui/{page}", headers=ADMIN)
        assert resp.status == 200, (page, await resp.text())
        assert resp.content_type == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.text()
        assert "<script" not in body.lower() and " on" + "click" not in body.lower()
    css = await client.get("/_stockade/ui/static/style.css")
    assert css.status == 200 and css.content_type == "text/css"
    bare = await client.get("/_stockade/ui", allow_redirects=False)
    assert bare.status == 308 and bare.headers["Location"] == "/_stockade/ui/"


async def test_refused_requests_are_listed_and_filtered(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    dist = fake_pypi.add_wheel("reqeusts", "1.0")
    fake_pypi.add_wheel("young", "2.0")
    engine = FakeEngine(blocked_names={"reqeusts"}, blocked_versions={("young", "2.0")})
    client = await client_for(aiohttp_client, tmp_path, fake_pypi, engine)
    refused = await client.get(f"/pypi/files/reqeusts/{dist.filename}")
    assert refused.status == 403
    assert (await client.get("/pypi/simple/young/")).status == 200  # 2.0 kept, refused on download
    page = await client.get("/_stockade/ui/refusals")
    # the decision log is written off the loop: poll until the record is there
    for _ in range(200):
        text = await page.text()
        if "reqeusts" in text:
            break
        page = await client.get("/_stockade/ui/refusals")
    assert "reqeusts" in text and "is on the deny list" in text and "deny-list" in text
    by_rule = await (await client.get("/_stockade/ui/refusals?rule=age")).text()
    assert "reqeusts" not in by_rule
    npm_only = await (await client.get("/_stockade/ui/refusals?ecosystem=npm")).text()
    assert "reqeusts" not in npm_only and "No refusal matches" in npm_only
    recent = await (await client.get("/_stockade/ui/refusals?since=1h&name=REQ")).text()
    assert "reqeusts" in recent
    future = await (await client.get("/_stockade/ui/refusals?since=2999-01-01")).text()
    assert "reqeusts" not in future
    team = await (await client.get("/_stockade/ui/refusals?team=payments")).text()
    assert "reqeusts" not in team  # records carry no team until authentication adds one
    bad = await client.get("/_stockade/ui/refusals?since=yesterday-ish")
    assert bad.status == 400
    assert "neither a date and time" in await bad.text()
    bad_eco = await client.get("/_stockade/ui/refusals?ecosystem=cargo")
    assert bad_eco.status == 400


async def test_explain_form_shows_the_api_answer(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    fake_pypi.add_wheel("reqeusts", "1.0")
    engine = FakeEngine(blocked_names={"reqeusts"})
    client = await client_for(aiohttp_client, tmp_path, fake_pypi, engine)
    api = await (await client.get("/_stockade/explain/pypi/reqeusts")).json()
    page = await client.get("/_stockade/ui/explain?ecosystem=pypi&name=reqeusts")
    assert page.status == 200
    text = await page.text()
    assert api["decision"]["reason"] in text
    assert f"<code>{api['decision']['rule']}</code>" in text
    assert "upstream" in text and "pypi" in text  # the facts table
    invalid = await client.get("/_stockade/ui/explain?ecosystem=pypi&name=a%20b")
    assert invalid.status == 400
    assert "is not a valid Python project name" in await invalid.text()
    unknown = await client.get("/_stockade/ui/explain?ecosystem=cargo&name=serde")
    assert unknown.status == 400 and "unknown ecosystem" in await unknown.text()
    escaped = await client.get("/_stockade/ui/explain?ecosystem=npm&name=<b>x</b>")
    assert "<b>x</b>" not in await escaped.text()


async def test_approve_needs_admin_same_origin_and_token(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    client = await client_for(aiohttp_client, tmp_path, fake_pypi, FakeEngine(),
                              policy=reads_approvals(tmp_path))
    origin = f"http://{client.server.host}:{client.server.port}"
    path = tmp_path / "approvals.yaml"  # the file the policy names
    form = {"ecosystem": "pypi", "name": "young", "until": "7d", "reason": "reviewed"}

    anonymous = await client.get("/_stockade/ui/approve")
    assert anonymous.status == 403 and 'name="csrf"' not in await anonymous.text()
    developer = await client.get("/_stockade/ui/approve", headers=DEVELOPER)
    assert developer.status == 403
    page = await (await client.get("/_stockade/ui/approve?name=young", headers=ADMIN)).text()
    good = token(page)
    assert str(path) in page  # the page says where approvals go

    cases = [
        ({**DEVELOPER, "Origin": origin}, good, "needs an admin identity"),
        ({**ADMIN, "Origin": origin}, "", "no valid anti-CSRF token"),
        ({**ADMIN, "Origin": origin}, good[:-2] + "xx", "not issued to you"),
        ({**ADMIN, "Origin": "https://evil.example"}, good, "another origin"),
        ({**ADMIN, "Sec-Fetch-Site": "cross-site"}, good, "from another site"),
    ]
    for headers, csrf, why in cases:
        resp = await client.post("/_stockade/ui/approve", data={**form, "csrf": csrf},
                                 headers=headers, allow_redirects=False)
        assert resp.status == 403, (headers, await resp.text())
        assert why in await resp.text()
    assert not path.exists()
    # a token issued to one admin is not another admin's
    other = {"X-Test-Identity": "carol,platform,admin", "Origin": origin}
    resp = await client.post("/_stockade/ui/approve", data={**form, "csrf": good},
                             headers=other, allow_redirects=False)
    assert resp.status == 403

    bad = await client.post("/_stockade/ui/approve",
                            data={**form, "until": "2001-01-01", "csrf": good},
                            headers={**ADMIN, "Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert bad.status == 400 and "next 366 days" in await bad.text()
    ok = await client.post("/_stockade/ui/approve", data={**form, "csrf": good},
                           headers={**ADMIN, "Origin": origin, "Sec-Fetch-Site": "same-origin"},
                           allow_redirects=False)
    assert ok.status == 303, await ok.text()
    assert ok.headers["Location"].startswith("/_stockade/ui/approve?")
    (entry,) = approvals.load(path)
    assert (entry.ecosystem, entry.name, entry.by, entry.reason) == (
        "pypi", "young", "alice", "reviewed")
    shown = await (await client.get(ok.headers["Location"], headers=ADMIN)).text()
    assert 'id="done"' in shown and "reviewed" in shown
    # extending replaces the earlier approval of the same name
    again = await client.post("/_stockade/ui/approve",
                              data={**form, "until": "30d", "reason": "extended",
                                    "csrf": token(shown)},
                              headers={**ADMIN, "Origin": origin}, allow_redirects=False)
    assert again.status == 303
    (entry2,) = approvals.load(path)
    assert entry2.reason == "extended" and entry2.until > entry.until


async def test_links_follow_the_public_path_and_trusted_prefix(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    public = await client_for(aiohttp_client, tmp_path / "a", fake_pypi, FakeEngine(),
                              server={"public_url": "https://tools.example.com/"},
                              policy=reads_approvals(tmp_path / "a"))
    page = await (await public.get("/_stockade/ui/approve", headers=ADMIN)).text()
    assert 'href="/_stockade/ui/refusals"' in page
    form = {"ecosystem": "npm", "name": "x", "until": "1d", "reason": "r", "csrf": token(page)}
    local = f"http://{public.server.host}:{public.server.port}"
    refused = await public.post("/_stockade/ui/approve", data=form,
                                headers={**ADMIN, "Origin": local}, allow_redirects=False)
    assert refused.status == 403  # the page's origin is the public one
    accepted = await public.post("/_stockade/ui/approve", data=form, allow_redirects=False,
                                 headers={**ADMIN, "Origin": "https://tools.example.com"})
    assert accepted.status == 303

    proxied = await client_for(aiohttp_client, tmp_path / "b", fake_pypi, FakeEngine(),
                               server={"trusted_proxies": ["127.0.0.1/32"]})
    text = await (await proxied.get("/_stockade/ui/cache",
                                    headers={"X-Forwarded-Prefix": "/mirror/"})).text()
    assert 'action="/mirror/_stockade/ui/cache"' in text
    for hostile in ("//evil.example", "/a/../b", "/x\"onmouseover=1", "https://evil.example/"):
        text = await (await proxied.get("/_stockade/ui/",
                                        headers={"X-Forwarded-Prefix": hostile})).text()
        assert 'href="/_stockade/ui/refusals"' in text, hostile

    untrusted = await client_for(aiohttp_client, tmp_path / "c", fake_pypi, FakeEngine())
    text = await (await untrusted.get("/_stockade/ui/",
                                      headers={"X-Forwarded-Prefix": "/mirror"})).text()
    assert 'href="/_stockade/ui/refusals"' in text


async def test_cache_lists_stored_files(aiohttp_client: Any, tmp_path: Path,
                                        fake_pypi: FakePyPI) -> None:
    small = fake_pypi.add_wheel("small-pkg", "1.0")
    other = fake_pypi.add_wheel("other-pkg", "2.0")
    client = await client_for(aiohttp_client, tmp_path, fake_pypi, FakeEngine(),
                              ui={"page_size": 1})
    for name, dist in (("small-pkg", small), ("other-pkg", other)):
        assert (await client.get(f"/pypi/files/{name}/{dist.filename}")).status == 200
    # a file's record is written once its bytes are verified, after the client has them
    for _ in range(500):
        everything = await (await client.get("/_stockade/ui/cache")).text()
        if "2 files match" in everything:
            break
        await asyncio.sleep(0.01)
    text = await (await client.get("/_stockade/ui/cache?name=SMALL")).text()
    assert small.filename in text and other.filename not in text
    assert "1 files match" in text and "not checked" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)  # last served
    first = await (await client.get("/_stockade/ui/cache?sort=size")).text()
    assert "2 files match" in first and 'id="next"' in first
    second = await (await client.get("/_stockade/ui/cache?sort=size&page=2")).text()
    assert (small.filename in first) != (small.filename in second)
    none = await (await client.get("/_stockade/ui/cache?min_size=999999999")).text()
    assert "0 files match" in none
    bad = await client.get("/_stockade/ui/cache?min_size=lots")
    assert bad.status == 400


async def test_overview_shows_reloads_and_upstreams_without_secrets(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    secret = "s3cr3t-upstream-token-value"  # noqa: S105 (a test value)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    settings = ui_settings(
        tmp_path, pypi_url=fake_pypi.url, policy={"file": str(policy), "reload_check_s": 0},
        npm={"upstreams": [{"name": "internal", "retries": 0,
                            "url": "http://127.0.0.1:9/npm/",
                            "auth": {"token_env": "NPM_TOKEN"}}]})
    from stockade.proxy.app import load_engine  # the real policy, to see a reload rejected

    app = ui_app(settings, load_engine, environ={"NPM_TOKEN": secret})
    client = await aiohttp_client(app)
    text = await (await client.get("/_stockade/ui/")).text()
    assert "none since the server started" in text
    assert "internal" in text and "http://127.0.0.1:9/npm/" in text
    # the rules cannot be built (no OSV folder), though the file names its approvals
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}, osv: {paths: [gone/]}}\n")
    from stockade.proxy.state import SERVICES

    reloader = app[SERVICES].reloader
    assert reloader is not None
    assert await reloader.reload("test") is False
    text = await (await client.get("/_stockade/ui/")).text()
    assert "rejected" in text and "stays in force" in text
    # an approval made while the policy file is broken says it is not in force yet
    form = {"ecosystem": "npm", "name": "x", "until": "1d", "reason": "r",
            "csrf": token(await (await client.get("/_stockade/ui/approve",
                                                  headers=ADMIN)).text())}
    origin = f"http://{client.server.host}:{client.server.port}"
    posted = await client.post("/_stockade/ui/approve", data=form,
                               headers={**ADMIN, "Origin": origin})
    assert posted.status == 200 and "could not be built again" in await posted.text()
    (written,) = approvals.load(tmp_path / "approvals.yaml")
    assert (written.ecosystem, written.name, written.by) == (Ecosystem.NPM, "x", "alice")
    old = approvals.Approval(Ecosystem.PYPI, "old", datetime(2020, 1, 1, tzinfo=UTC), "then",
                             "alice")
    (tmp_path / "approvals.yaml").write_text(yaml.safe_dump(
        {"approvals": [old.as_dict(), written.as_dict()]}))
    listed = await (await client.get("/_stockade/ui/approve", headers=ADMIN)).text()
    assert re.search(r"2020-01-01 00:00:00 UTC <span[^>]*>\(expired\)", listed)
    pages = [await (await client.get(f"/_stockade/ui/{p}", headers=ADMIN)).text()
             for p in PAGES]
    assert all(secret not in page for page in pages)
    assert secret not in json.dumps(await (await client.get("/_stockade/explain/npm/x")).json())


async def test_the_page_can_be_turned_off(aiohttp_client: Any, tmp_path: Path,
                                          fake_pypi: FakePyPI) -> None:
    client = await client_for(aiohttp_client, tmp_path, fake_pypi, FakeEngine(),
                              ui={"enabled": False})
    assert (await client.get("/_stockade/ui/")).status == 404
    assert (await client.get("/_stockade/explain/pypi/demo")).status == 200


async def test_replicas_sharing_a_key_accept_each_others_forms(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    environ = {"UI_KEY": "one key for every replica"}
    clients = []
    for name in ("a", "b", "c"):
        settings = ui_settings(tmp_path / name, pypi_url=fake_pypi.url,
                               policy=reads_approvals(tmp_path / name),
                               ui={"csrf_key_env": "UI_KEY" if name != "c" else None})
        clients.append(await aiohttp_client(ui_app(settings, lambda _s: FakeEngine(),
                                                   environ=environ)))
    first, second, third = clients
    form = {"ecosystem": "pypi", "name": "x", "until": "1d", "reason": "r",
            "csrf": token(await (await first.get("/_stockade/ui/approve", headers=ADMIN)).text())}
    for client, status in ((second, 303), (third, 403)):
        resp = await client.post("/_stockade/ui/approve", data=form, allow_redirects=False,
                                 headers=ADMIN)
        assert resp.status == status


async def test_approve_says_when_the_policy_reads_no_approvals(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    form = {"ecosystem": "pypi", "name": "young", "until": "7d", "reason": "reviewed"}
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {protected: {pypi: [acme-billing]}}}\n")
    cases = [({}, "no policy file is configured"),
             ({"policy": {"file": str(policy), "reload_check_s": 0}},
              "names no approvals file")]
    for n, (extra, why) in enumerate(cases):
        client = await client_for(aiohttp_client, tmp_path / str(n), fake_pypi, FakeEngine(),
                                  **extra)
        page = await client.get("/_stockade/ui/approve?name=young", headers=ADMIN)
        text = await page.text()
        assert page.status == 200 and 'id="no-approvals-file"' in text and why in text
        assert 'id="approve-form"' not in text and 'name="csrf"' not in text
        # a form posted anyway (with a valid token) is refused and writes nothing
        good = client.app[UI].tokens.issue(Identity("alice", "platform", True))
        origin = f"http://{client.server.host}:{client.server.port}"
        resp = await client.post("/_stockade/ui/approve", data={**form, "csrf": good},
                                 headers={**ADMIN, "Origin": origin}, allow_redirects=False)
        assert resp.status == 409 and why in await resp.text()
    assert sorted(p.name for p in tmp_path.rglob("*approvals*")) == []


async def test_an_approval_on_the_page_lifts_a_real_hold(
        aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> None:
    young = (datetime.now(UTC) - timedelta(days=2, hours=1)).isoformat()
    wheel = fake_pypi.add_wheel("flask-cors-2", "1.0", upload_time=young)
    from stockade.proxy.app import decision_log_path, load_engine  # the real typosquat hold

    settings = ui_settings(tmp_path, pypi_url=fake_pypi.url, policy=reads_approvals(tmp_path))
    client = await aiohttp_client(ui_app(settings, load_engine))
    held = await client.get(f"/pypi/files/flask-cors-2/{wheel.filename}")
    assert held.status == 403 and "held until" in held.reason
    page = await (await client.get("/_stockade/ui/approve?ecosystem=pypi&name=flask-cors-2",
                                   headers=ADMIN)).text()
    origin = f"http://{client.server.host}:{client.server.port}"
    ok = await client.post("/_stockade/ui/approve", headers={**ADMIN, "Origin": origin},
                           data={"ecosystem": "pypi", "name": "flask-cors-2", "until": "7d",
                                 "reason": "our fork", "csrf": token(page)},
                           allow_redirects=False)
    assert ok.status == 303 and "done=applied" in ok.headers["Location"]
    (entry,) = approvals.load(tmp_path / "approvals.yaml")
    assert (entry.ecosystem, entry.name, entry.by) == (Ecosystem.PYPI, "flask-cors-2", "alice")
    passed = await client.get(f"/pypi/files/flask-cors-2/{wheel.filename}")
    assert passed.status == 200
    # the decision log says who approved it and why (written off the loop: poll)
    log = decision_log_path(settings)
    deadline = asyncio.get_running_loop().time() + 30
    while "approved by alice until" not in (log.read_text() if log.exists() else ""):
        assert asyncio.get_running_loop().time() < deadline, "the approval was never logged"
        await asyncio.sleep(0.02)
    assert ": our fork" in log.read_text()
