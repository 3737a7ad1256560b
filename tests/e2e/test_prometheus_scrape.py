"""A real Prometheus server scrapes ``stockade serve`` and can query its metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testbed.net import free_port

# A real Prometheus server scraping: past pytest's 120 s default on a
# loaded two-core machine; the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        body = json.loads(resp.read())
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_the_contract_metrics(tmp_path: Path, proxy_process: Any) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (.ci/setup-prometheus.sh installs it)")
    proxy = proxy_process({"storage": {"path": str(tmp_path / "data")},
                           "pypi": {"upstreams": []}, "npm": {"upstreams": []},
                           "maven": {"upstreams": []}})
    with urllib.request.urlopen(proxy.url + "/healthz"):  # noqa: S310
        pass
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = proxy.url.removeprefix("http://")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: stockade\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(  # noqa: S603
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not found:
            time.sleep(0.5)
            try:
                found = _query(base, 'stockade_requests_total{kind="healthz"}')
            except OSError:
                continue
        assert found, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert found[0]["metric"]["ecosystem"] == "ops"
        up = _query(base, 'up{job="stockade"}')
        assert up[0]["value"][1] == "1"
        assert _query(base, "stockade_storage_bytes")
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
