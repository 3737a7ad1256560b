"""A real Prometheus scrapes a private ``/metrics`` with its bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed import prometheus
from tests.e2e.test_access_clients import WRONG, make_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_prometheus_scrapes_with_a_metrics_token(tmp_path: Path, proxy_process: Any) -> None:
    if prometheus.binary() is None:
        pytest.skip("prometheus is not installed (.ci/setup-prometheus.sh installs it)")
    tokens = tmp_path / "tokens.yaml"
    token = make_token(tokens, "prometheus", None, "metrics")
    proxy = proxy_process({"storage": {"path": str(tmp_path / "data")},
                           "pypi": {"upstreams": []}, "npm": {"upstreams": []},
                           "maven": {"upstreams": []},
                           "auth": {"tokens": str(tokens), "anonymous": {"metrics": False}}})
    target = proxy.url.removeprefix("http://")
    (tmp_path / "good-token").write_text(token)
    (tmp_path / "wrong-token").write_text(WRONG)
    jobs = "".join(
        f"  - job_name: {job}\n"
        f"    authorization: {{type: Bearer, credentials_file: {tmp_path / (job + '-token')}}}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
        for job in ("good", "wrong"))
    jobs += f"  - job_name: none\n    static_configs: [{{targets: ['{target}']}}]\n"
    with prometheus.prometheus(tmp_path, jobs) as server:
        up = server.poll("up", lambda found: {r["metric"]["job"]: r["value"][1] for r in found},
                         lambda up: len(up) >= 3)
        assert up == {"good": "1", "wrong": "0", "none": "0"}, server.log_tail()
        # the refusals are counted, and scraped by the job whose token is good
        reasons = server.poll('stockade_auth_refusals_total{group="metrics"}',
                              lambda found: {r["metric"]["reason"] for r in found},
                              lambda reasons: reasons == {"invalid", "missing"})
        assert reasons == {"invalid", "missing"}
    assert token not in proxy.log_path.read_text()
