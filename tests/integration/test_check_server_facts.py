"""``stockade check --server`` with lines of a project's facts: the server decides."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.cli import main
from testbed.fakes.npm_upstream import FakeNpm


def _line(name: str, days: int, releases: int, version: str | None = None) -> str:
    first = (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    return json.dumps({"name": name, "version": version, "first_release": first,
                       "releases": releases, "owners": ["x"], "summary": None,
                       "repository": None})


async def test_facts_lines_are_decided_by_the_server_as_locally(
    aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("axios-2", "1.0.0", time="2020-01-01T00:00:00.000Z")
        policy = tmp_path / "policy.yaml"
        policy.write_text("rules: {typosquat: {}}\n")
        config = tmp_path / "stockade.yaml"
        config.write_text(yaml.safe_dump({
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}]},
            "policy": {"file": str(policy)},
        }))
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        server = str(client.make_url("/"))
        lines = [_line("axios-2", 2, 1), _line("axios-2", 900, 40),
                 _line("axios-3", 2, 1)]  # axios-3 is not published: the question is "if"
        answers = {}
        for where in (["--server", server], ["--config", str(config)]):
            code = await asyncio.to_thread(
                main, ["check", "npm", *lines, "--json", *where])
            assert code == 1  # a hold refuses
            answers[where[0]] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        remote, local = answers["--server"], answers["--config"]
        assert [d["decision"] for d in remote] == ["hold", "warn", "hold"]
        assert [(d["decision"], d["target"], d.get("until")) for d in remote] == [
            (d["decision"], d["target"], d.get("until")) for d in local]
        assert remote[0]["target"] == "axios" and "is new (first release 2 days ago" in \
            remote[0]["reason"]

        # A bad line is an error before anything is asked; the API says what is wrong.
        assert await asyncio.to_thread(
            main, ["check", "npm", '{"name": "x", "releases": -1}', "--server", server]) == 2
        assert "releases: expected a count" in capsys.readouterr().err
        other = await client.get(f"/_stockade/explain/npm/lodash?facts={quote(lines[0])}")
        assert other.status == 400
        assert "the line is for 'axios-2'" in await other.text()
        bad = await client.get("/_stockade/explain/npm/axios-2?facts=%7Bnope")
        assert bad.status == 400 and "not a JSON object" in await bad.text()
    finally:
        await registry.stop()
