"""Maven look-alikes get holds like npm and PyPI: the project's facts come from
maven-metadata.xml (versions, the groupId as owner) and the oldest version's
checksum file's Last-Modified (its first release)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import yaml

from stockade.config.load import load_settings
from stockade.proxy.app import decision_log_path, make_app
from testbed.fakes.maven_upstream import FakeMaven


def _config(tmp_path: Path, url: str) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {typosquat: {}}\n")
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []},
        "maven": {"upstreams": [{"name": "central", "url": url, "retries": 0}]},
        "policy": {"file": str(policy)},
    }))
    return config


async def test_a_young_maven_look_alike_is_held_an_old_one_allowed(
        aiohttp_client: Any, tmp_path: Path) -> None:
    fake = FakeMaven()
    # "slf4j:slf4j-api" resembles "org.slf4j:slf4j-api" in a namespace of another owner
    fake.add("slf4j", "slf4j-api", "1.0")
    fake.last_modified["slf4j/slf4j-api/1.0/slf4j-api-1.0.pom"] = format_datetime(
        datetime.now(UTC) - timedelta(days=2, hours=1), usegmt=True)
    # an old look-alike with many versions: allowed
    for v in ("1.1", "1.2", "1.3", "1.4", "1.5"):
        fake.add("slf4j", "slf4j-simple", v)
    fake.last_modified["slf4j/slf4j-simple/1.1/slf4j-simple-1.1.pom"] = format_datetime(
        datetime.now(UTC) - timedelta(days=900), usegmt=True)
    # the target's own namespace publishes look-alikes of its names: cleared
    fake.add("org.slf4j", "slf4j-api-2", "1.0")
    fake.last_modified["org/slf4j/slf4j-api-2/1.0/slf4j-api-2-1.0.pom"] = format_datetime(
        datetime.now(UTC) - timedelta(days=1), usegmt=True)
    await fake.start()
    try:
        config = _config(tmp_path, fake.url)
        client = await aiohttp_client(make_app(load_settings(config, environ={})))
        held = await client.get("/maven/slf4j/slf4j-api/maven-metadata.xml")
        assert held.status == 403  # never 404
        text = await held.text()
        assert '"slf4j:slf4j-api" resembles "org.slf4j:slf4j-api" and is new (first ' \
               "release 2 days ago, 1 release); held until " in text
        old = await client.get("/maven/slf4j/slf4j-simple/maven-metadata.xml")
        assert old.status == 200
        own = await client.get("/maven/org/slf4j/slf4j-api-2/maven-metadata.xml")
        assert own.status == 200
        # only look-alikes cost the one more fetch
        asked = [p for _, p in fake.requests if p.endswith(".pom.sha1")]
        assert "/maven2/slf4j/slf4j-api/1.0/slf4j-api-1.0.pom.sha1" in asked
        assert not any("org/slf4j/slf4j-api-2" in p for p in asked)
    finally:
        await fake.stop()
    await client.close()  # the decision log's writer writes out what is queued on close
    path = decision_log_path(load_settings(config, environ={}))
    records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    held_records = [r for r in records if r["name"] == "slf4j:slf4j-api"]
    assert held_records and held_records[0]["decision"] == "hold"
    # an old project's likeness is looked for no deeper than the quick search (as on npm
    # and PyPI), and the target's own namespace is cleared: neither is recorded
    assert not [r for r in records if r["name"] in ("org.slf4j:slf4j-api-2",
                                                     "slf4j:slf4j-simple")]
