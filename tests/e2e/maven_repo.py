"""The Maven upstream the end-to-end tests of Maven clients (mvn, Gradle) build against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.maven_upstream import FakeMaven
from tests.fakes.threaded import ThreadedServer


def repository(root: Path | None = None) -> FakeMaven:
    """A small dependency tree (lib 1.0 and 2.0 on util 1.0, and one more to refuse)
    over ``root``'s files, with checksum files as Central publishes them."""
    repo = FakeMaven(root=root)
    repo.add("org.e2e", "util", "1.0")
    repo.add("org.e2e", "lib", "1.0", dependencies=[("org.e2e", "util", "1.0")])
    repo.add("org.e2e", "lib", "2.0", dependencies=[("org.e2e", "util", "1.0")])
    repo.add("org.e2e", "blocked", "1.0")
    return repo


def proxy_config(tmp_path: Path, server: ThreadedServer, **extra: Any) -> dict[str, Any]:
    """``stockade serve`` settings with ``server`` as the only Maven upstream."""
    return {
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []},
        "maven": {"upstreams": [{"name": "central", "url": server.url("/maven2/"),
                                 "retries": 0}], "cache": {"metadata_ttl_s": 1}},
        **extra,
    }


def deny_policy(tmp_path: Path) -> Path:
    """A policy refusing the name ``org.e2e:blocked`` and version 2.0 of ``org.e2e:lib``."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  lists:\n    deny:\n"
        "      - {ecosystem: maven, name: 'org.e2e:blocked', reason: 'test: known bad',"
        " owner: e2e}\n"
        "      - {ecosystem: maven, name: 'org.e2e:lib', versions: '2.0',"
        " reason: 'test: broken release', owner: e2e}\n")
    return policy
