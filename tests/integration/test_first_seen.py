"""Release age counts from when stockade first saw a version, not only the upstream's date."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stockade.config.load import load_settings
from stockade.policy.model import Ecosystem, Facts
from stockade.proxy.app import make_app
from stockade.proxy.firstseen import FirstSeen
from stockade.storage.refs import RefStore
from testbed.fakes.npm_upstream import FakeNpm

OLD = datetime(2020, 1, 1, tzinfo=UTC)


async def test_first_sight_trusts_dates_later_versions_get_now(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 24, tzinfo=UTC).timestamp()]
    seen = FirstSeen(RefStore(tmp_path, "firstseen"), clock=lambda: now[0])
    first = await seen.annotate(Ecosystem.NPM, "x", {"1.0.0": Facts(published_at=OLD)})
    assert first["1.0.0"].first_seen_at == OLD
    later = await seen.annotate(Ecosystem.NPM, "x", {"1.0.0": Facts(published_at=OLD),
                                                     "1.1.0": Facts(published_at=OLD)})
    assert later["1.0.0"].first_seen_at == OLD
    assert later["1.1.0"].first_seen_at == datetime.fromtimestamp(now[0], UTC)
    again = FirstSeen(RefStore(tmp_path, "firstseen"))  # survives a restart
    kept = await again.annotate(Ecosystem.NPM, "x", {"1.1.0": Facts(published_at=OLD)})
    assert kept["1.1.0"].first_seen_at == later["1.1.0"].first_seen_at


async def test_backdated_new_version_is_held_back(aiohttp_client: Any, tmp_path: Path) -> None:
    registry = await FakeNpm().start()
    try:
        registry.publish("steady", "1.0.0", time="2020-01-01T00:00:00.000Z")
        policy = tmp_path / "policy.yaml"
        policy.write_text("rules: {cooldown: {min_age: 3d}}\n")
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            "npm": {"upstreams": [{"name": "npmjs", "url": registry.url}],
                    "cache": {"metadata_ttl_s": 0.01}},
            "policy": {"file": str(policy)},
        })
        client = await aiohttp_client(make_app(settings, environ={}))
        doc = await (await client.get("/npm/steady")).json()
        assert list(doc["versions"]) == ["1.0.0"]
        # A new version claiming a date years ago: stockade saw it just now.
        registry.publish("steady", "1.0.1", time="2020-01-02T00:00:00.000Z")
        await asyncio.sleep(0.05)
        resp = await client.get("/npm/steady")
        doc = await resp.json()
        assert list(doc["versions"]) == ["1.0.0"]
        assert "cooldown" in resp.headers["X-Stockade-Filtered"]
        refused = await client.get("/npm/steady/-/steady-1.0.1.tgz")
        assert refused.status == 403
        assert "held back" in (await refused.json())["error"]
    finally:
        await registry.stop()


async def test_a_single_file_request_does_not_make_an_old_version_new(tmp_path: Path) -> None:
    seen = FirstSeen(RefStore(tmp_path, "firstseen"))
    await seen.annotate(Ecosystem.MAVEN, "g:a", {"2.0": Facts(published_at=OLD)},
                        complete=False)
    older = await seen.annotate(Ecosystem.MAVEN, "g:a", {"1.0": Facts(published_at=OLD)},
                                complete=False)
    assert older["1.0"].first_seen_at == OLD


async def test_maven_metadata_holds_back_versions_that_appear_later(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from testbed.fakes.maven_upstream import FakeMaven

    repo = await FakeMaven().start()
    try:
        repo.add("org.example", "lib", "1.0")
        policy = tmp_path / "policy.yaml"
        policy.write_text("rules: {cooldown: {min_age: 3d}}\n")
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "npm": {"upstreams": []},
            "maven": {"upstreams": [{"name": "central", "url": repo.url}],
                      "cache": {"metadata_ttl_s": 0.01}},
            "policy": {"file": str(policy)},
        })
        client = await aiohttp_client(make_app(settings, environ={}))
        meta = "/maven/org/example/lib/maven-metadata.xml"
        assert "<version>1.0</version>" in await (await client.get(meta)).text()
        repo.add("org.example", "lib", "1.1")  # appears after stockade started watching
        await asyncio.sleep(0.05)
        resp = await client.get(meta)
        body = await resp.text()
        assert "<version>1.0</version>" in body
        assert "1.1" not in body
        assert "cooldown" in resp.headers["X-Stockade-Filtered"]
    finally:
        await repo.stop()


async def test_check_answers_first_sight_as_the_server_does(tmp_path: Path) -> None:
    """The commands read the record without writing it, and still decide an undated
    version of a package never seen as the server's first sight of it does."""
    listing = {"1.0": Facts(), "2.0": Facts(published_at=OLD)}
    checked = await FirstSeen(RefStore(tmp_path, "firstseen"), read_only=True).annotate(
        Ecosystem.MAVEN, "g:a", listing)
    assert not (tmp_path / "refs").exists()  # nothing written
    served = await FirstSeen(RefStore(tmp_path, "firstseen")).annotate(
        Ecosystem.MAVEN, "g:a", listing)
    assert {v: f.first_seen_at for v, f in checked.items()} == \
        {v: f.first_seen_at for v, f in served.items()}
    assert served["2.0"].first_seen_at == OLD


async def test_an_undated_file_of_a_known_package_is_not_made_new(tmp_path: Path) -> None:
    """A Maven upstream without checksum files gives a file no date: it is neither
    'published 0 seconds ago' nor old, and the release-age rule decides a missing date."""
    now = [time.time()]
    seen = FirstSeen(RefStore(tmp_path, "firstseen"), clock=lambda: now[0])
    await seen.annotate(Ecosystem.MAVEN, "g:a", {"1.0": Facts()})  # the listing, first sight
    now[0] += 3600
    alone = await seen.annotate(Ecosystem.MAVEN, "g:a", {"0.9": Facts()}, complete=False)
    assert alone["0.9"].first_seen_at is None
    listed = await seen.annotate(Ecosystem.MAVEN, "g:a", {"0.9": Facts(), "1.0": Facts()})
    assert listed["0.9"].first_seen_at is not None  # a listing records it from then on
