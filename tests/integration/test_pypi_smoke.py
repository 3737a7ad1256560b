from __future__ import annotations

import hashlib

from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory


async def test_json_page_then_file(fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
    dist = fake_pypi.add_wheel("Demo.Pkg", "1.0")
    proxy = await make_proxy(upstream=fake_pypi)
    resp = await proxy.get("/pypi/simple/demo-pkg/",
                           headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert resp.status == 200, await resp.text()
    doc = await resp.json(content_type=None)
    (entry,) = doc["files"]
    assert entry["url"] == f"../../files/demo-pkg/{dist.filename}"
    assert entry["hashes"] == {"sha256": dist.sha256}
    file_resp = await proxy.get(f"/pypi/files/demo-pkg/{dist.filename}")
    assert file_resp.status == 200
    body = await file_resp.read()
    assert hashlib.sha256(body).hexdigest() == dist.sha256
