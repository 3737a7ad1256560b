"""The page's reload and purge forms: admins only, same origin, a token; the same
actions as the admin API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stockade.proxy.app import load_engine
from testbed.fakes.pypi_upstream import FakePyPI
from tests.integration.test_ui import token
from tests.integration.ui_support import ADMIN, DEVELOPER, ui_app, ui_settings


@pytest.fixture
async def page_client(aiohttp_client: Any, tmp_path: Path, fake_pypi: FakePyPI) -> Any:
    fake_pypi.add_wheel("demo", "1.0")
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {lists: {deny: []}}\n")
    settings = ui_settings(tmp_path, pypi_url=fake_pypi.url,
                           policy={"file": str(policy), "reload_check_s": 0})
    return await aiohttp_client(ui_app(settings, load_engine))


def _origin(client: Any) -> str:
    return f"http://{client.server.host}:{client.server.port}"


async def test_the_forms_need_admin_same_origin_and_token(page_client: Any) -> None:
    client = page_client
    for who in ({}, DEVELOPER):
        shown = await client.get("/_stockade/ui/actions", headers=who)
        text = await shown.text()
        assert shown.status == 403 and 'name="csrf"' not in text
        assert "needs an admin identity" in text
    good = token(await (await client.get("/_stockade/ui/actions", headers=ADMIN)).text())
    origin = _origin(client)
    for action in ("reload", "purge"):
        form = {"ecosystem": "pypi", "name": "demo"}
        cases = [
            ({**DEVELOPER, "Origin": origin}, good, "needs an admin identity"),
            ({**ADMIN, "Origin": origin}, "", "no valid anti-CSRF token"),
            ({**ADMIN, "Origin": origin}, good[:-2] + "xx", "not issued to you"),
            ({**ADMIN, "Origin": "https://evil.example"}, good, "another origin"),
            ({**ADMIN, "Sec-Fetch-Site": "cross-site"}, good, "from another site"),
        ]
        for headers, csrf, why in cases:
            resp = await client.post(f"/_stockade/ui/actions/{action}",
                                     data={**form, "csrf": csrf}, headers=headers)
            assert resp.status == 403, (action, why)
            assert why in await resp.text(), (action, why)


async def test_reload_on_the_page(page_client: Any, tmp_path: Path,
                                  fake_pypi: FakePyPI) -> None:
    client = page_client
    wheel = fake_pypi.projects["demo"][0]
    assert (await client.get(f"/pypi/files/demo/{wheel.filename}")).status == 200
    (tmp_path / "policy.yaml").write_text(
        "rules: {lists: {deny: [{ecosystem: pypi, name: demo, reason: pulled}]}}\n")
    page = await (await client.get("/_stockade/ui/actions", headers=ADMIN)).text()
    headers = {**ADMIN, "Origin": _origin(client), "Sec-Fetch-Site": "same-origin"}
    resp = await client.post("/_stockade/ui/actions/reload", data={"csrf": token(page)},
                             headers=headers)
    text = await resp.text()
    assert resp.status == 200 and 'id="reload-result"' in text and "Applied" in text
    assert (await client.get(f"/pypi/files/demo/{wheel.filename}")).status == 403

    (tmp_path / "policy.yaml").write_text("rules: {lists: {deny: [{ecosystem: pypi}]}}\n")
    resp = await client.post("/_stockade/ui/actions/reload", data={"csrf": token(text)},
                             headers=headers)
    text = await resp.text()
    assert resp.status == 422 and "Rejected" in text and "rules.lists.deny.0" in text
    overview = await (await client.get("/_stockade/ui/")).text()
    assert "web page request by alice" in overview  # the last reload, as the page shows it


async def test_purge_on_the_page(page_client: Any, fake_pypi: FakePyPI) -> None:
    client = page_client
    wheel = fake_pypi.projects["demo"][0]
    for _ in range(2):  # each read whole: a file is stored once it was all sent
        fetched = await client.get(f"/pypi/files/demo/{wheel.filename}")
        assert fetched.status == 200 and await fetched.read() == wheel.data
    assert fake_pypi.count(wheel.filename) == 1
    page = await (await client.get("/_stockade/ui/actions", headers=ADMIN)).text()
    headers = {**ADMIN, "Origin": _origin(client)}
    resp = await client.post("/_stockade/ui/actions/purge", headers=headers, data={
        "ecosystem": "pypi", "name": "demo", "version": "", "csrf": token(page)})
    text = await resp.text()
    assert resp.status == 200, text
    assert 'id="purge-result"' in text and "Purged pypi demo" in text
    assert wheel.filename in text
    listed = await (await client.get("/_stockade/ui/cache?name=demo")).text()
    (row,) = [r for r in listed.split("<tr") if f"{wheel.filename}<br>" in r]
    assert "not stored (purged or evicted)" in row  # the record stays, the bytes go
    fetched = await client.get(f"/pypi/files/demo/{wheel.filename}")
    assert fetched.status == 200 and await fetched.read() == wheel.data  # read whole:
    assert fake_pypi.count(wheel.filename) == 2  # fetched again, and stored once sent
    listed = await (await client.get("/_stockade/ui/cache?name=demo")).text()
    (row,) = [r for r in listed.split("<tr") if f"{wheel.filename}<br>" in r]
    assert "not stored" not in row  # stored again

    resp = await client.post("/_stockade/ui/actions/purge", headers=headers, data={
        "ecosystem": "cargo", "name": "demo", "csrf": token(text)})
    assert resp.status == 400 and "unknown ecosystem" in await resp.text()
    resp = await client.post("/_stockade/ui/actions/purge", headers=headers, data={
        "ecosystem": "pypi", "name": "not a name", "csrf": token(text)})
    assert resp.status == 400 and "not a valid" in await resp.text()
