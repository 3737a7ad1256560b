"""A real Prometheus scrapes a private ``/metrics`` with its bearer token."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from testbed.net import free_port
from tests.e2e.test_access_clients import WRONG, make_token
from tests.e2e.test_prometheus_scrape import _query

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_prometheus_scrapes_with_a_metrics_token(tmp_path: Path, proxy_process: Any) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
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
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                      f"scrape_configs:\n{jobs}")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(  # noqa: S603
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        up: dict[str, str] = {}
        while time.monotonic() < deadline and len(up) < 3:
            time.sleep(0.5)
            try:
                up = {r["metric"]["job"]: r["value"][1] for r in _query(base, "up")}
            except OSError:
                continue
        assert up == {"good": "1", "wrong": "0", "none": "0"}, \
            (tmp_path / "prometheus.log").read_text()[-2000:]
        # the refusals are counted, and scraped by the job whose token is good
        reasons: set[str] = set()
        while time.monotonic() < deadline and reasons != {"invalid", "missing"}:
            time.sleep(0.5)
            reasons = {r["metric"]["reason"] for r in
                       _query(base, 'stockade_auth_refusals_total{group="metrics"}')}
        assert reasons == {"invalid", "missing"}
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    assert token not in proxy.log_path.read_text()
