"""Front-server mode with a real nginx in front of ``stockade serve``.

stockade decides every request and answers a stored artifact with
``X-Accel-Redirect``; nginx, configured as the README's sample, sends the file.
pip installs through nginx, cold and then warm, and gets the upstream's bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import frontnginx
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.e2e.test_pypi_clients import pip_install

# Real pip and nginx processes: generous on a loaded machine; the bound stops a
# hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600),
              pytest.mark.skipif(not frontnginx.available(),
                                 reason="nginx is not installed (.ci/setup-nginx.sh)")]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder nginx's unprivileged workers may read (pytest's tmp_path is private)."""
    folder = Path(tempfile.mkdtemp(prefix="stockade-accel-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _get(url: str, **headers: str) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        return resp.status, resp.read(), resp.headers


def test_pip_installs_through_nginx_sending_stockades_files(
        tmp_path: Path, shared_dir: Path, proxy_process: Any) -> None:
    index = FakePyPI()
    app_dist = index.add_wheel("accel-app", "1.0", requires=["accel-lib"])
    index.add_wheel("accel-lib", "1.0")
    server = ThreadedServer(index.app).start()
    try:
        storage = shared_dir / "data"
        proxy = proxy_process({
            "server": {"accel_redirect": {"prefix": "/_stockade_blobs/"}},
            "storage": {"path": str(storage)},
            "pypi": {"upstreams": [{"name": "pypi", "url": server.url("/simple/")}]},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
        })
        front = frontnginx.start(shared_dir / "nginx", stockade_port=proxy.port,
                                 storage=storage)
        try:
            simple = front.url("/pypi/simple/")
            for name in ("cold", "warm"):
                result = pip_install(tmp_path, simple, "accel-app", name=name)
                assert result.returncode == 0, result.stdout + result.stderr
            assert index.count(app_dist.filename) == 1
            path = f"/pypi/files/accel-app/{app_dist.filename}"
            status, body, headers = _get(front.url(path))
            assert (status, body) == (200, app_dist.data)
            assert headers["X-Stockade-Cache"] == "hit"  # stockade decided, nginx sent
            assert "X-Accel-Redirect" not in headers
            status, body, _ = _get(front.url(path), Range="bytes=0-9")
            assert (status, body) == (206, app_dist.data[:10])
            # The internal location cannot be asked for directly.
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(front.url("/_stockade_blobs/blobs/"))
            refused.value.close()
            assert refused.value.code == 404
        finally:
            front.stop()
    finally:
        server.stop()


async def test_a_large_packument_is_sent_by_nginx_in_either_encoding(
        shared_dir: Path, proxy_process: Any) -> None:
    name = "stockade-accel-fixture"
    registry = FakeNpm()
    for i in range(300):  # a packument well over the 1 MiB kept in memory
        registry.publish(name, f"1.0.{i}", extra={"description": "x" * 4000})
    await registry.start()  # served by this test's loop while urllib runs in threads
    try:
        storage = shared_dir / "data"
        proxy = proxy_process({
            "server": {"accel_redirect": {"prefix": "/_stockade_blobs/"}},
            "storage": {"path": str(storage)},
            "npm": {"upstreams": [{"name": "npm", "url": registry.url}]},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        })
        front = frontnginx.start(shared_dir / "nginx", stockade_port=proxy.port,
                                 storage=storage)
        url = front.url(f"/npm/{name}")
        try:
            status, plain, headers = await asyncio.to_thread(_get, url)
            assert status == 200 and len(plain) > 1024 * 1024
            tarball = json.loads(plain)["versions"]["1.0.299"]["dist"]["tarball"]
            assert tarball.startswith(front.url(f"/npm/{name}/-/"))
            status, plain_again, headers = await asyncio.to_thread(_get, url)
            assert (status, plain_again) == (200, plain)  # warm: sent by nginx
            assert headers["Content-Type"].startswith("application/json")
            assert headers["X-Stockade-Cache"] == "hit"
            status, zipped, headers = await asyncio.to_thread(
                _get, url, **{"Accept-Encoding": "gzip"})
            assert headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(zipped) == plain
            with pytest.raises(urllib.error.HTTPError) as not_modified:
                await asyncio.to_thread(_get, url, **{"If-None-Match": headers["ETag"]})
            not_modified.value.close()
            assert not_modified.value.code == 304
        finally:
            front.stop()
    finally:
        await registry.stop()
