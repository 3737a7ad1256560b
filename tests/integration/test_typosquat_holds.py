"""Holds in a running proxy: a young look-alike is held with its reason, an approval
lifts it (and is recorded), an old one is allowed and recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from stockade.config.load import load_settings
from stockade.proxy.app import decision_log_path, make_app
from stockade.proxy.cli import main
from stockade.proxy.state import SERVICES
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI


def _stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat().replace("+00:00", "Z")


def _config(tmp_path: Path, *, npm: str | None = None, pypi: str | None = None) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": pypi}] if pypi else []},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm}] if npm else []},
        "maven": {"upstreams": []},
        "policy": {"file": str(policy), "reload_check_s": 0.05},
    }))
    return config


def _log(config: Path) -> list[dict[str, Any]]:
    """The decision log's whole lines so far (none before its first batch is written)."""
    path = decision_log_path(load_settings(config, environ={}))
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


async def _logged(config: Path, check: Callable[[list[dict[str, Any]]], bool],
                  what: str) -> list[dict[str, Any]]:
    """The decision log's records once ``check`` holds of them: the log is written off
    the request path, in batches, and may trail the answers on a busy machine."""
    records: list[dict[str, Any]] = []

    def ready() -> bool:
        records[:] = _log(config)
        return check(records)

    await _until(ready, what)
    return records


async def _until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def _young_and_old(registry: FakeNpm, young: str, old: str, *, releases: int) -> None:
    """``young`` first published two days ago (one release), ``old`` 800 days ago
    with ``releases`` releases."""
    two_days = _stamp(timedelta(days=2, hours=1))
    registry.publish(young, "1.0.0", time=two_days)
    registry.created[young] = two_days
    registry.publish(old, "1.0.0", time=_stamp(timedelta(days=800)))
    for i in range(1, releases):
        registry.publish(old, f"1.{i}.0", time=_stamp(timedelta(days=700 - i)))
    registry.created[old] = _stamp(timedelta(days=800))


async def test_npm_hold_its_reason_and_an_approval(aiohttp_client: Any, tmp_path: Path) -> None:
    registry = await FakeNpm().start()
    try:
        _young_and_old(registry, "axios-2", "axios-3", releases=6)
        config = _config(tmp_path, npm=registry.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        gate = client.app[SERVICES].gate

        held = await client.get("/npm/axios-2")
        assert held.status == 403  # never 404
        error = (await held.json())["error"]
        assert error.startswith('Blocked by stockade: "axios-2" resembles "axios" and is new '
                                "(first release 2 days ago, 1 release); held until ")
        assert error.endswith(" unless approved (rule typosquat)")
        tarball = await client.get("/npm/axios-2/-/axios-2-1.0.0.tgz")
        assert tarball.status == 403
        assert "held until" in (await tarball.json())["error"]

        old = await client.get("/npm/axios-3")  # an old look-alike: allowed, recorded
        assert old.status == 200
        assert len((await old.json())["versions"]) == 6

        before = gate.revision
        code = await asyncio.to_thread(main, ["approve", "npm", "axios-2", "--reason",
                                              "vendored fork", "--by", "alice",
                                              "--config", str(config)])
        assert code == 0
        await _until(lambda: gate.revision != before, "the approval was never picked up")
        allowed = await client.get("/npm/axios-2")
        assert allowed.status == 200
        assert (await client.get("/npm/axios-2/-/axios-2-1.0.0.tgz")).status == 200
    finally:
        await registry.stop()
    records = await _logged(config, lambda rs: any(
        r["client"] == "stockade approve" for r in rs), "the approval was never logged")
    approval = [r for r in records if r["client"] == "stockade approve"]
    assert len(approval) == 1
    assert approval[0]["name"] == "axios-2" and approval[0]["decision"] == "allow"
    assert "approved by alice until" in approval[0]["reason"]
    assert approval[0]["reason"].endswith(": vendored fork")
    warned = [r for r in records if r["name"] == "axios-3"]
    assert warned and all(r["decision"] == "warn" for r in warned)
    assert warned[0]["reason"].startswith("lets through, noted, 6 versions of axios-3")
    assert 'resembles "axios" (version suffix): allowed' in warned[0]["reason"]
    held_records = [r for r in records if r["name"] == "axios-2" and r["decision"] == "hold"]
    assert held_records


async def test_npm_separator_variant_held_young_and_recorded_old(
        aiohttp_client: Any, tmp_path: Path) -> None:
    """A strong npm shape decided in the loose tier (a separator changed): a young
    project is held with the loose tier's sentence, an established one is served and
    recorded as a look-alike."""
    registry = await FakeNpm().start()
    try:
        _young_and_old(registry, "code-mirror", "react-router-dev", releases=5)
        config = _config(tmp_path, npm=registry.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))

        held = await client.get("/npm/code-mirror")
        assert held.status == 403
        error = (await held.json())["error"]
        assert error.startswith('Blocked by stockade: "code-mirror" resembles "codemirror" '
                                "and is new (first release 2 days ago, 1 release); held until ")
        old = await client.get("/npm/react-router-dev")
        assert old.status == 200
        assert len((await old.json())["versions"]) == 5
    finally:
        await registry.stop()
    records = await _logged(config, lambda rs: {"code-mirror", "react-router-dev"} <= {
        r["name"] for r in rs}, "the hold and the look-alike were never logged")
    assert any(r["name"] == "code-mirror" and r["decision"] == "hold" for r in records)
    warned = [r for r in records if r["name"] == "react-router-dev"]
    assert warned and all(r["decision"] == "warn" for r in warned)
    assert """resembles "react-router" (added affix 'dev'): allowed""" in warned[0]["reason"]


async def test_pypi_hold_is_refused_at_the_file_download(aiohttp_client: Any,
                                                        tmp_path: Path) -> None:
    index = await FakePyPI().start()
    try:
        wheel = index.add_wheel("flask-cors-2", "1.0",
                                upload_time=_stamp(timedelta(days=2, hours=1)))
        config = _config(tmp_path, pypi=index.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        page = await client.get("/pypi/simple/flask-cors-2/",
                                headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert page.status == 200  # listed, so pip asks for the file and prints why
        (listed,) = (await page.json())["files"]
        assert listed["filename"] == wheel.filename
        refused = await client.get(f"/pypi/files/flask-cors-2/{wheel.filename}")
        assert refused.status == 403
        assert refused.reason.startswith(
            'Blocked by stockade: "flask-cors-2" resembles "flask-cors" and is new (first '
            "release 2 days ago, 1 release); held until ")
    finally:
        await index.stop()


async def test_pypi_html_only_page_leaves_the_age_unknown(aiohttp_client: Any,
                                                         tmp_path: Path) -> None:
    index = await FakePyPI(serve_html_only=True).start()
    try:
        wheel = index.add_wheel("flask-cors-2", "1.0",
                                upload_time=_stamp(timedelta(days=2)))
        config = _config(tmp_path, pypi=index.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        assert (await client.get("/pypi/simple/flask-cors-2/")).status == 200
        # loose tier, age unknown: allowed by default, and recorded
        assert (await client.get(f"/pypi/files/flask-cors-2/{wheel.filename}")).status == 200
    finally:
        await index.stop()
    records = await _logged(config, lambda rs: any(r["name"] == "flask-cors-2" for r in rs),
                            "the look-alike was never logged")
    warned = [r for r in records if r["name"] == "flask-cors-2"]
    assert warned and warned[0]["decision"] == "warn"
    assert "its age is unknown" in warned[0]["reason"]


async def test_pypi_summary_and_repository_are_asked_for_look_alikes_only(
        aiohttp_client: Any, tmp_path: Path) -> None:
    index = await FakePyPI().start()
    try:
        for i in range(6):  # old, many releases: only its summary or repository tells
            index.add_wheel("flask-cors-2", f"1.{i}", upload_time=_stamp(timedelta(days=900)))
            index.add_wheel("flask-cors-3", f"1.{i}", upload_time=_stamp(timedelta(days=900)))
            index.add_wheel("plain-thing", f"1.{i}", upload_time=_stamp(timedelta(days=900)))
        index.info["flask-cors-2"] = {"summary": "A Flask extension simplifying CORS support."}
        index.info["flask-cors-3"] = {"summary": "Mine", "project_urls": {
            "Source": "https://github.com/corydolphin/flask-cors"}}
        config = _config(tmp_path, pypi=index.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        copied = await client.get("/pypi/files/flask-cors-2/flask_cors_2-1.5-py3-none-any.whl")
        assert copied.status == 403
        assert copied.reason.endswith(
            '"flask-cors-2" resembles "flask-cors" and copies its summary; held unless '
            "approved (rule typosquat)")
        jacked = await client.get("/pypi/files/flask-cors-3/flask_cors_3-1.5-py3-none-any.whl")
        assert jacked.status == 403
        assert "points at its repository (corydolphin/flask-cors)" in jacked.reason
        plain = await client.get("/pypi/files/plain-thing/plain_thing-1.5-py3-none-any.whl")
        assert plain.status == 200
        assert index.count("/pypi/flask-cors-2/json") == 1  # fetched once, then cached
        assert index.count("/pypi/plain-thing/json") == 0  # not a look-alike: never asked
    finally:
        await index.stop()


async def test_pypi_json_api_leaves_a_loose_tier_name_to_its_facts(
        aiohttp_client: Any, tmp_path: Path) -> None:
    """Poetry resolves from the JSON API: a name the loose tier decides (two popular
    names joined) is decided there on the project's facts, as pip's page and file
    downloads decide it, not refused on the name alone."""
    index = await FakePyPI().start()
    try:
        for i in range(6):  # old, many releases: allowed and recorded
            index.add_wheel("django-pydantic", f"1.{i}", upload_time=_stamp(timedelta(days=900)))
        config = _config(tmp_path, pypi=index.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        found = await client.get("/pypi/pypi/django-pydantic/json")
        assert found.status == 200, await found.text()
        assert len((await found.json())["releases"]) == 6
        # a strong match is still refused there on its name
        assert (await client.get("/pypi/pypi/reqeusts/json")).status == 403
    finally:
        await index.stop()
    records = await _logged(config, lambda rs: any(
        r["name"] == "django-pydantic" for r in rs), "the look-alike was never logged")
    recorded = [r for r in records if r["name"] == "django-pydantic"]
    assert recorded and {r["decision"] for r in recorded} == {"warn"}
    assert 'resembles "pydantic"' in recorded[0]["reason"]
