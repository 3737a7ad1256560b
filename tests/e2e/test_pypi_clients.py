"""Real pip and uv, as processes, installing through ``stockade serve``.

The upstream is a fake index on 127.0.0.1 serving wheels the test builds;
pip runs with ``--isolated`` so the machine's pip configuration cannot add an
index that bypasses the proxy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer

# Pip and uv installs, each a real process: past pytest's 120 s default on a
# loaded two-core machine; the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture
def upstream() -> Iterator[tuple[FakePyPI, ThreadedServer]]:
    index = FakePyPI()
    index.add_wheel("e2e-app", "1.0", requires=["e2e-lib>=1.0", "e2e_util"])
    index.add_wheel("e2e-lib", "1.0", requires=["e2e-util<3"])
    index.add_wheel("e2e-lib", "2.0", requires=["e2e-util<3"])
    index.add_wheel("e2e-util", "1.0")
    index.add_sdist("e2e-util", "1.0")
    index.add_wheel("e2e-big", "1.0", payload_bytes=40_000_000)
    server = ThreadedServer(index.app).start()
    yield index, server
    server.stop()


def _config(tmp_path: Path, server: ThreadedServer, **cache: Any) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": server.url("/simple/"), "retries": 0}],
                 "cache": {"metadata_ttl_s": 1, **cache}},
        "npm": {"upstreams": []},
        "maven": {"upstreams": []},
        "logging": {"level": "INFO"},
    }


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)  # noqa: S603
    return path / "bin" / "python"


def pip_install(tmp_path: Path, index: str, *reqs: str,
                name: str) -> subprocess.CompletedProcess[str]:
    python = _venv(tmp_path / name)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated",
         "--no-cache-dir", "--disable-pip-version-check", "--index-url", index, *reqs],
        capture_output=True, text=True, timeout=180, env=_clean_env(tmp_path),
    )


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (pip install '.[test]' installs it)")
    return found


def uv_install(tmp_path: Path, index: str, *reqs: str,
               name: str) -> subprocess.CompletedProcess[str]:
    python = _venv(tmp_path / name)
    return subprocess.run(  # noqa: S603
        [_uv(), "pip", "install", "--no-config", "--no-cache", "--python", str(python),
         "--index-url", index, *reqs],
        capture_output=True, text=True, timeout=180, env=_clean_env(tmp_path),
    )


def _imports(venv: Path, *modules: str) -> None:
    code = "; ".join(f"import {m}" for m in modules)
    subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True)  # noqa: S603


def test_pip_and_uv_install_through_proxy_then_offline(
    tmp_path: Path, upstream: tuple[FakePyPI, ThreadedServer], proxy_process: Any
) -> None:
    index, server = upstream
    proxy = proxy_process(_config(tmp_path, server))
    simple = f"{proxy.url}/pypi/simple/"

    result = pip_install(tmp_path, simple, "e2e-app", name="pip1")
    assert result.returncode == 0, result.stdout + result.stderr
    _imports(tmp_path / "pip1", "e2e_app", "e2e_lib", "e2e_util")
    assert "e2e_lib-2.0" in result.stdout
    wheels = [f for f in ("e2e_app-1.0-py3-none-any.whl", "e2e_lib-2.0-py3-none-any.whl",
                          "e2e_util-1.0-py3-none-any.whl")]
    assert [index.count(w) for w in wheels] == [1, 1, 1]

    result = uv_install(tmp_path, simple, "e2e-app", name="uv1")
    assert result.returncode == 0, result.stdout + result.stderr
    _imports(tmp_path / "uv1", "e2e_app", "e2e_lib", "e2e_util")
    # The second client is served from the cache: no artifact reaches the upstream again.
    assert [index.count(w) for w in wheels] == [1, 1, 1]

    server.stop()
    time.sleep(1.1)  # let the metadata TTL lapse so the proxy must fall back to stale pages
    result = pip_install(tmp_path, simple, "e2e-app", name="pip-offline")
    assert result.returncode == 0, result.stdout + result.stderr
    _imports(tmp_path / "pip-offline", "e2e_app", "e2e_lib", "e2e_util")
    result = uv_install(tmp_path, simple, "e2e-app", name="uv-offline")
    assert result.returncode == 0, result.stdout + result.stderr

    started = time.monotonic()
    result = pip_install(tmp_path, simple, "never-fetched", name="pip-missing")
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    with urllib.request.urlopen(proxy.url + "/metrics") as resp:  # noqa: S310
        metrics = resp.read().decode()
    assert 'stockade_cache_requests_total{ecosystem="pypi",result="stale"}' in metrics
    assert 'stockade_bytes_served_total{ecosystem="pypi",source="cache"}' in metrics


def test_kill_during_fetch_leaves_no_partial_blob(
    tmp_path: Path, upstream: tuple[FakePyPI, ThreadedServer], proxy_process: Any
) -> None:
    index, server = upstream
    big = next(d for d in index.projects["e2e-big"])
    index.faults[big.filename] = "slow"
    proxy = proxy_process(_config(tmp_path, server))
    url = f"{proxy.url}/pypi/files/e2e-big/{big.filename}"
    reader = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", f"import urllib.request as u; u.urlopen({url!r}).read()"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    spool = tmp_path / "data" / "tmp"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
        p.stat().st_size > 1_000_000 for p in spool.glob("*.part")
    ):
        time.sleep(0.05)
    assert any(spool.glob("*.part")), "the fetch never started spooling"
    proxy.stop(signal.SIGKILL)
    reader.wait(timeout=20)
    blobs = tmp_path / "data" / "blobs"
    assert not [p for p in blobs.rglob("*") if p.is_file()]

    del index.faults[big.filename]
    proxy = proxy_process(_config(tmp_path, server))
    assert list(spool.glob("*.part")) == []  # the restart dropped the partial spool
    with urllib.request.urlopen(f"{proxy.url}/pypi/files/e2e-big/{big.filename}") as resp:  # noqa: S310
        assert resp.read() == big.data
    assert len([p for p in blobs.rglob("*") if p.is_file()]) == 1


POLICY = """
rules:
  lists:
    deny:
      - {ecosystem: pypi, name: e2e-util, versions: "==1.0", reason: "test: bad build",
         owner: e2e}
      - {ecosystem: pypi, name: e2e-lib, versions: "2.0", reason: "test: broken release",
         owner: e2e}
"""


def test_pip_shows_refusals_and_resolves_around_a_refused_version(
    tmp_path: Path, upstream: tuple[FakePyPI, ThreadedServer], proxy_process: Any
) -> None:
    _, server = upstream
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    proxy = proxy_process({**_config(tmp_path, server), "policy": {"file": str(policy)}})
    simple = f"{proxy.url}/pypi/simple/"

    # The newest e2e-lib is refused: the resolver picks the newest allowed one.
    result = pip_install(tmp_path, simple, "e2e-lib", "--no-deps", name="pip-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "e2e_lib-1.0" in result.stdout
    assert "e2e_lib-2.0" not in result.stdout

    # Every version of e2e-util is refused: pip shows why, from the refused download.
    result = pip_install(tmp_path, simple, "e2e-util", name="pip-util")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Blocked by stockade" in out
    assert "test: bad build" in out

    # A lockfile naming the refused file directly gets the reason too.
    wheel = f"{proxy.url}/pypi/files/e2e-lib/e2e_lib-2.0-py3-none-any.whl"
    result = pip_install(tmp_path, simple, wheel, "--no-deps", name="pip-direct")
    assert result.returncode != 0
    assert "test: broken release" in result.stdout + result.stderr

    # uv prints the reason of the refused download as well.
    result = uv_install(tmp_path, simple, "e2e-util", name="uv-util")
    assert result.returncode != 0
    assert "Blocked by stockade" in result.stdout + result.stderr
