"""The Maven upstream the end-to-end tests of Maven clients (mvn, Gradle) build against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.threaded import ThreadedServer


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


# Debian's packaged plugins: a complete repository on disk, so a fresh machine
# with no Maven Central in reach builds the same project.
M2 = Path("/usr/share/maven-repo")
PLUGINS = M2 / "org" / "apache" / "maven" / "plugins"


def _newest(plugin: str) -> str:
    """The newest real version of ``plugin`` in the repository, pinned in the POM so
    Maven needs no plugin metadata ("debian" is Debian's alias, not a version)."""
    folder = PLUGINS / plugin
    found = [p.name for p in folder.iterdir() if p.is_dir() and p.name[:1].isdigit()] \
        if folder.is_dir() else []
    return max(found, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split(".")],
               default="")


RESOURCES = _newest("maven-resources-plugin")
COMPILER = _newest("maven-compiler-plugin")

POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.e2e</groupId><artifactId>app</artifactId><version>1.0</version>
  <properties>
    <maven.compiler.source>1.8</maven.compiler.source>
    <maven.compiler.target>1.8</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencies>
    <dependency><groupId>org.e2e</groupId><artifactId>lib</artifactId>
      <version>1.0</version></dependency>
    DEPENDENCY
  </dependencies>
  <build><plugins>
    <plugin><groupId>org.apache.maven.plugins</groupId>
      <artifactId>maven-resources-plugin</artifactId><version>{RESOURCES}</version></plugin>
    <plugin><groupId>org.apache.maven.plugins</groupId>
      <artifactId>maven-compiler-plugin</artifactId><version>{COMPILER}</version></plugin>
  </plugins></build>
</project>
"""
