"""Real ``mvn``, as a process, building through ``stockade serve``.

The upstream is a repository on 127.0.0.1: artifacts the test builds (a small
dependency tree) plus Debian's Maven repository (``/usr/share/maven-repo``,
filled by .ci/setup-maven.sh) for the build plugins and what they need, with
checksum files generated beside every file, as Central publishes them.
Maven runs with its own settings (a mirror of everything to the proxy) and an
empty local repository, so nothing comes from anywhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.threaded import ThreadedServer
from testbed.maven_repo import COMPILER, M2, POM, RESOURCES, deny_policy, proxy_config, repository

# Several mvn runs (online, cached, offline): past pytest's 120 s default on a
# loaded two-core machine; the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]



def _mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        pytest.skip("mvn is not installed (.ci/setup-maven.sh installs it)")
    if not (COMPILER and RESOURCES):
        pytest.skip(f"{M2} lacks Debian's maven-compiler-plugin or maven-resources-plugin "
                    "(.ci/setup-maven.sh installs them): the build plugins cannot be served "
                    "offline")
    return found


@pytest.fixture
def upstream() -> Iterator[tuple[FakeMaven, ThreadedServer]]:
    _mvn()
    repo = repository(M2)
    server = ThreadedServer(repo.app).start()
    yield repo, server
    server.stop()


def _project(tmp_path: Path, name: str, proxy_url: str, dependency: str = "",
             lib: str = "1.0") -> Path:
    work = tmp_path / name
    (work / "src" / "main" / "java" / "e2e").mkdir(parents=True)
    pom = POM.replace("DEPENDENCY", dependency).replace(
        "<artifactId>lib</artifactId>\n      <version>1.0</version>",
        f"<artifactId>lib</artifactId>\n      <version>{lib}</version>")
    (work / "pom.xml").write_text(pom)
    (work / "src" / "main" / "java" / "e2e" / "App.java").write_text(
        "package e2e; public class App { public static void main(String[] a) {} }\n")
    (work / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>stockade</id><mirrorOf>*</mirrorOf>"
        f"<url>{proxy_url}/maven/</url></mirror></mirrors></settings>")
    return work


def mvn(work: Path, local: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAVEN_")}
    return subprocess.run(  # noqa: S603
        [_mvn(), "-B", "-s", str(work / "settings.xml"), f"-Dmaven.repo.local={local}",
         *args, "compile"],
        cwd=work, capture_output=True, text=True, timeout=600, env=env, check=False,
    )


def test_mvn_compile_through_proxy_then_cached_then_offline(
    tmp_path: Path, upstream: tuple[FakeMaven, ThreadedServer], proxy_process: Any
) -> None:
    repo, server = upstream
    proxy = proxy_process(proxy_config(tmp_path, server))
    work = _project(tmp_path, "first", proxy.url)
    result = mvn(work, tmp_path / "m2-a")
    assert result.returncode == 0, result.stdout[-4000:]
    assert (work / "target" / "classes" / "e2e" / "App.class").is_file()
    assert (tmp_path / "m2-a" / "org" / "e2e" / "util" / "1.0" / "util-1.0.jar").is_file()
    jars = [p for m, p in repo.requests if m == "GET" and p.endswith((".jar", ".pom"))]
    assert len(jars) > 20  # the plugins and their dependencies came through the proxy
    # each verified by the sha1 its response carried, as Central sends it: no
    # checksum file was asked of the upstream, and no file twice
    assert [p for m, p in repo.requests if p.endswith((".md5", ".sha1", ".sha256",
                                                       ".sha512"))] == []
    assert len(set(jars)) == len(jars)

    # Another empty local repository: every artifact comes from the proxy's cache.
    before = len(repo.requests)
    second = _project(tmp_path, "second", proxy.url)
    result = mvn(second, tmp_path / "m2-b")
    assert result.returncode == 0, result.stdout[-4000:]
    fetched = [p for m, p in repo.requests[before:] if p.endswith((".jar", ".pom"))]
    assert fetched == []

    # The upstream goes away: what was resolved before resolves again.
    server.stop()
    third = _project(tmp_path, "third", proxy.url)
    result = mvn(third, tmp_path / "m2-c")
    assert result.returncode == 0, result.stdout[-4000:]


def test_mvn_shows_refusals_and_resolves_around_a_refused_version(
        tmp_path: Path, upstream: tuple[FakeMaven, ThreadedServer], proxy_process: Any) -> None:
    _, server = upstream
    proxy = proxy_process(proxy_config(tmp_path, server,
                                       policy={"file": str(deny_policy(tmp_path))}))

    # A refused name: Maven's own output carries the reason.
    dependency = ("<dependency><groupId>org.e2e</groupId><artifactId>blocked</artifactId>"
                  "<version>1.0</version></dependency>")
    work = _project(tmp_path, "refused", proxy.url, dependency)
    result = mvn(work, tmp_path / "m2-r")
    assert result.returncode != 0
    assert "Blocked by stockade" in result.stdout
    assert "test: known bad" in result.stdout

    # A version range whose newest version is refused resolves the newest allowed one.
    local = tmp_path / "m2-range"
    work = _project(tmp_path, "range", proxy.url, lib="[1.0,3.0)")
    result = mvn(work, local)
    assert result.returncode == 0, result.stdout[-4000:]
    lib = local / "org" / "e2e" / "lib"
    assert (lib / "1.0" / "lib-1.0.jar").is_file()
    assert not (lib / "2.0" / "lib-2.0.jar").exists()

    # The refused version asked for directly is refused, with the reason shown.
    work = _project(tmp_path, "pinned", proxy.url, lib="2.0")
    result = mvn(work, tmp_path / "m2-pinned")
    assert result.returncode != 0
    assert "test: broken release" in result.stdout
