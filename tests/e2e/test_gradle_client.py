"""Real ``gradle``, as a process, resolving dependencies through ``stockade serve``.

The upstream is a Maven repository on 127.0.0.1 (a small dependency tree with
checksum files). Gradle runs with its own empty user home and no daemon, and
the build names the proxy's ``/maven/`` root as its only repository, so nothing
comes from anywhere else. Gradle is the one installed on the machine
(``.ci/setup-maven.sh`` installs Debian's).
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
from testbed.maven_repo import deny_policy, proxy_config, repository

# A Gradle daemon start and a resolve through the proxy: past pytest's 120 s default on a
# loaded two-core machine; the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

BUILD = """apply plugin: 'java'
repositories {{ maven {{ url '{url}/maven/' }} }}
dependencies {{ compile '{dependency}' }}
task resolveAll {{
  doLast {{ configurations.compile.resolve().each {{ println 'RESOLVED ' + it.name }} }}
}}
"""


def _gradle() -> str:
    found = shutil.which("gradle")
    if found is None:
        pytest.skip("gradle is not installed (.ci/setup-maven.sh installs Debian's)")
    return found


@pytest.fixture
def upstream() -> Iterator[tuple[FakeMaven, ThreadedServer]]:
    _gradle()
    repo = repository()
    server = ThreadedServer(repo.app).start()
    yield repo, server
    server.stop()


def gradle(tmp_path: Path, name: str, proxy_url: str,
           dependency: str) -> subprocess.CompletedProcess[str]:
    work = tmp_path / name
    work.mkdir()
    (work / "settings.gradle").write_text(f"rootProject.name = '{name}'\n")
    (work / "build.gradle").write_text(BUILD.format(url=proxy_url, dependency=dependency))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GRADLE_", "JAVA_TOOL_OPTIONS", "MAVEN_"))}
    return subprocess.run(  # noqa: S603
        [_gradle(), "--no-daemon", "--console=plain", "-g", str(work / "gradle-home"),
         "resolveAll"],
        cwd=work, capture_output=True, text=True, timeout=600, env=env, check=False,
    )


def test_gradle_resolves_through_proxy_and_sees_refusals(
        tmp_path: Path, upstream: tuple[FakeMaven, ThreadedServer], proxy_process: Any) -> None:
    repo, server = upstream
    proxy = proxy_process(proxy_config(tmp_path, server,
                                       policy={"file": str(deny_policy(tmp_path))}))

    # A pinned dependency and its transitive one, through the proxy.
    result = gradle(tmp_path, "pinned", proxy.url, "org.e2e:lib:1.0")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "RESOLVED lib-1.0.jar" in output
    assert "RESOLVED util-1.0.jar" in output
    assert ("GET", "/maven2/org/e2e/util/1.0/util-1.0.jar") in repo.requests

    # A version range whose newest version is refused resolves the newest allowed one.
    result = gradle(tmp_path, "range", proxy.url, "org.e2e:lib:[1.0,3.0)")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "RESOLVED lib-1.0.jar" in output
    assert "lib-2.0.jar" not in output

    # A refused name fails the build with the reason in Gradle's own output.
    result = gradle(tmp_path, "refused", proxy.url, "org.e2e:blocked:1.0")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Blocked by stockade" in output, output[-4000:]
    assert "test: known bad" in output

    # The refused version asked for directly: refused, the reason shown.
    result = gradle(tmp_path, "refused-version", proxy.url, "org.e2e:lib:2.0")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "test: broken release" in output, output[-4000:]
