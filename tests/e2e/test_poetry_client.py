"""Real poetry, as a process, locking and installing through ``stockade serve``.

Poetry runs from its own environment (``.ci/setup-poetry.sh``) with its config,
cache and the project's virtual environment in temporary folders, and the
proxy as the project's only (primary) source.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POETRY = Path(__file__).resolve().parents[2] / ".ci" / ".tools" / "poetry" / "bin" / "poetry"

PROJECT = """\
[project]
name = "e2e-poetry-app"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = [DEPENDENCIES]

[tool.poetry]
package-mode = false
"""

POLICY = """
rules:
  lists:
    deny:
      - {ecosystem: pypi, name: e2e-lib, versions: "2.0", reason: "test: broken release",
         owner: e2e}
      - {ecosystem: pypi, name: e2e-util, versions: "==1.0", reason: "test: bad build",
         owner: e2e}
"""


@pytest.fixture
def upstream() -> Iterator[tuple[FakePyPI, ThreadedServer]]:
    index = FakePyPI()
    index.add_wheel("e2e-lib", "1.0")
    index.add_wheel("e2e-lib", "2.0")
    index.add_wheel("e2e-util", "1.0")
    server = ThreadedServer(index.app).start()
    yield index, server
    server.stop()


def _poetry(project: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "POETRY_", "VIRTUAL_ENV"))}
    env.update({
        "POETRY_CONFIG_DIR": str(tmp_path / "poetry-config"),
        "POETRY_CACHE_DIR": str(tmp_path / "poetry-cache"),
        "POETRY_DATA_DIR": str(tmp_path / "poetry-data"),
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
        "POETRY_NO_INTERACTION": "1",
        "PIP_CONFIG_FILE": os.devnull,
    })
    return subprocess.run(  # noqa: S603
        [str(POETRY), *args], cwd=project, capture_output=True, text=True, timeout=300,
        env=env,
    )


def _project(tmp_path: Path, name: str, index: str, *dependencies: str) -> Path:
    project = tmp_path / name
    project.mkdir()
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (project / "pyproject.toml").write_text(PROJECT.replace("DEPENDENCIES", deps))
    return project


def test_poetry_installs_around_a_refused_version_and_shows_a_refusal(
    tmp_path: Path, upstream: tuple[FakePyPI, ThreadedServer], proxy_process: Any
) -> None:
    if not POETRY.exists():
        pytest.skip("poetry is not installed (.ci/setup-poetry.sh installs it)")
    index, server = upstream
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    proxy = proxy_process({
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": server.url("/simple/"),
                                "retries": 0}]},
        "npm": {"upstreams": []}, "maven": {"upstreams": []},
        "policy": {"file": str(policy)},
    })
    simple = f"{proxy.url}/pypi/simple/"

    app = _project(tmp_path, "app", simple, "e2e-lib")
    added = _poetry(app, tmp_path, "source", "add", "--priority=primary", "stockade", simple)
    assert added.returncode == 0, added.stdout + added.stderr
    installed = _poetry(app, tmp_path, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # the newest e2e-lib is refused: poetry resolves to the newest allowed one
    assert "e2e-lib (1.0)" in installed.stdout
    assert index.count("e2e_lib-1.0-py3-none-any.whl") == 1
    assert index.count("e2e_lib-2.0-py3-none-any.whl") == 0
    assert (app / "poetry.lock").exists()

    # every version of e2e-util is refused: poetry prints why at the download
    util = _project(tmp_path, "util", simple, "e2e-util")
    _poetry(util, tmp_path, "source", "add", "--priority=primary", "stockade", simple)
    refused = _poetry(util, tmp_path, "install")
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "403" in out
    assert "Blocked by stockade" in out, out
