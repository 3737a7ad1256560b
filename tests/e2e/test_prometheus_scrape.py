"""A real Prometheus server scrapes ``stockade serve`` and can query its metrics."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testbed import prometheus

# A real Prometheus server scraping: past pytest's 120 s default on a
# loaded two-core machine; the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_prometheus_scrapes_the_contract_metrics(tmp_path: Path, proxy_process: Any) -> None:
    if prometheus.binary() is None:
        pytest.skip("prometheus is not installed (.ci/setup-prometheus.sh installs it)")
    proxy = proxy_process({"storage": {"path": str(tmp_path / "data")},
                           "pypi": {"upstreams": []}, "npm": {"upstreams": []},
                           "maven": {"upstreams": []}})
    with urllib.request.urlopen(proxy.url + "/healthz"):  # noqa: S310
        pass
    target = proxy.url.removeprefix("http://")
    jobs = f"  - job_name: stockade\n    static_configs:\n      - targets: ['{target}']\n"
    with prometheus.prometheus(tmp_path, jobs) as server:
        found = server.poll('stockade_requests_total{kind="healthz"}', list, bool)
        assert found, server.log_tail()
        assert found[0]["metric"]["ecosystem"] == "ops"
        up = server.query('up{job="stockade"}')
        assert up[0]["value"][1] == "1"
        assert server.query("stockade_storage_bytes")
