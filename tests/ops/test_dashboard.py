"""The Grafana dashboard: the committed JSON is the generator's output, every
panel query parses and names only metrics a live stockade exposes (or ``up``),
and a real Prometheus scraping a live stockade returns data for each query.

There is no Grafana here, so Grafana's variables are replaced as Grafana would
with "All" selected: ``$job`` and ``$instance`` by their ``allValue`` (.+) and
``$__rate_interval`` by a window holding many 1 s scrapes.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.ops.tools import (
    DASHBOARD,
    RULES,
    free_port,
    http_get,
    metric_names,
    stop,
    tool,
    wait_until_ready,
)

RATE_WINDOW = "1m"
GENERATOR = DASHBOARD.with_name("generate.py")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, query) for every query of every panel."""
    return [(panel["title"], t["expr"]) for panel in dashboard()["panels"]
            for t in panel.get("targets", [])]


def substitute(expr: str) -> str:
    """The query Grafana sends with "All" selected."""
    variables = {"job": ".+", "instance": ".+", "__rate_interval": RATE_WINDOW}

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in variables, f"unknown variable ${name} in {expr}"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def test_committed_dashboard_is_the_generators_output() -> None:
    spec = importlib.util.spec_from_file_location("stockade_dashboard_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), (
        f"{DASHBOARD.name} is stale: run python {GENERATOR.relative_to(GENERATOR.parents[3])}")


def test_every_query_parses_and_selects_metrics() -> None:
    queries = panel_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        names = metric_names(substitute(expr))
        assert names, title
        assert all(n == "up" or n.startswith("stockade_") for n in names), (title, names)


def test_panels_cover_what_operators_watch() -> None:
    named = set().union(*(metric_names(substitute(e)) for _, e in panel_queries()))
    assert named == {
        "up", "stockade_requests_total", "stockade_request_duration_seconds_bucket",
        "stockade_cache_requests_total", "stockade_upstream_requests_total",
        "stockade_upstream_duration_seconds_bucket", "stockade_policy_decisions_total",
        "stockade_policy_reloads_total", "stockade_integrity_failures_total",
        "stockade_bytes_served_total", "stockade_decision_log_pending_records",
        "stockade_decision_log_lost_records_total", "stockade_storage_bytes",
    }
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


# --- a live stockade and a real Prometheus ----------------------------------------

POLICY = """\
rules:
  typosquat: {enabled: false}   # its name index takes seconds to build; not needed here
  lists:
    deny:
      - {ecosystem: pypi, name: ctx, reason: "hijacked project (2022)", owner: security}
"""


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


@dataclass
class Live:
    stockade: subprocess.Popen[bytes]
    stockade_url: str
    prometheus_url: str
    policy: Path
    workdir: Path


def _upstream() -> FakePyPI:
    index = FakePyPI()
    index.add_wheel("demo", "1.0")
    tampered = index.add_wheel("tampered", "1.0")
    index.faults[tampered.filename] = "corrupt"
    index.add_wheel("ctx", "1.0")
    index.page_faults["broken"] = "500"
    return index


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    prometheus = tool("prometheus")
    server = ThreadedServer(_upstream().app).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        port = free_port()
        config = tmp_path / "stockade.yaml"
        config.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "port": port},
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": [{"name": "pypi", "url": server.url("/simple/"),
                                    "retries": 0}]},
            "npm": {"upstreams": []}, "maven": {"upstreams": []},
            "policy": {"file": str(policy), "reload_check_s": 0.5},
        }))
        log = tmp_path / "stockade.log"
        with log.open("wb") as out:
            procs.append(subprocess.Popen(  # noqa: S603
                [str(Path(sys.executable).parent / "stockade"), "serve", "--config",
                 str(config)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT))
        stockade_url = f"http://127.0.0.1:{port}"
        wait_until_ready(stockade_url + "/readyz", procs[0], log)

        prom_port = free_port()
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "stockade",
                                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }))
        prom_log = tmp_path / "prometheus.log"
        with prom_log.open("wb") as out:
            procs.append(subprocess.Popen(  # noqa: S603
                [prometheus, f"--config.file={prom_config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=out, stderr=subprocess.STDOUT))
        prometheus_url = f"http://127.0.0.1:{prom_port}"
        wait_until_ready(prometheus_url + "/-/ready", procs[1], prom_log)
        yield Live(procs[0], stockade_url, prometheus_url, policy, tmp_path)
    finally:
        for proc in reversed(procs):
            stop(proc)
        server.stop()


def _file_url(live: Live, project: str) -> str:
    page = f"{live.stockade_url}/pypi/simple/{project}/"
    status, body = http_get(page)
    assert status == 200, (project, status, body[:300])
    parser = _Links()
    parser.feed(body.decode())
    (href,) = parser.hrefs
    return urllib.parse.urljoin(page, href).split("#")[0]


def _metrics(live: Live) -> dict[str, float]:
    """Sample name and labels -> value, from stockade's own /metrics."""
    status, body = http_get(live.stockade_url + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _poll(what: str, condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def _traffic(live: Live) -> None:
    """Requests that make every series the dashboard shows exist."""
    demo = _file_url(live, "demo")  # a miss
    _file_url(live, "demo")  # a hit
    assert http_get(demo)[0] == 200  # fetched from the upstream
    assert http_get(demo)[0] == 200  # served from the cache
    assert http_get(_file_url(live, "ctx"))[0] == 403  # refused by the deny list
    assert http_get(live.stockade_url + "/pypi/simple/broken/")[0] == 502  # upstream 500
    tampered = _file_url(live, "tampered")
    with contextlib.suppress(OSError, http.client.HTTPException):
        http_get(tampered)  # the digest does not match: the body is cut short
    live.policy.write_text(POLICY + "      - {ecosystem: pypi, name: ctx2, reason: x}\n")
    live.stockade.send_signal(signal.SIGHUP)  # reload now rather than at the next check

    def seen() -> bool:
        names = _metrics(live)
        return (any(k.startswith("stockade_policy_reloads_total{result=applied")
                    for k in names)
                and any(k.startswith("stockade_integrity_failures_total") for k in names))

    _poll("the reload and the integrity failure in /metrics", seen, 30)


def _query(live: Live, expr: str) -> list[dict[str, Any]]:
    url = f"{live.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}"
    status, body = http_get(url)
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "success", (expr, doc)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


@pytest.mark.timeout(180)
def test_every_panel_query_returns_data_from_a_live_stockade(live: Live) -> None:
    _traffic(live)

    exposed = {key.split("{")[0] for key in _metrics(live)}
    for title, expr in panel_queries():
        missing = metric_names(substitute(expr)) - exposed - {"up"}
        assert not missing, f"{title}: not in a live /metrics: {sorted(missing)}"
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        missing = metric_names(rule["expr"]) - exposed - {"up"}
        assert not missing, f"{rule['alert']}: not in a live /metrics: {sorted(missing)}"

    pending = {title + " :: " + expr: substitute(expr) for title, expr in panel_queries()}

    def all_answered() -> bool:
        for key, expr in list(pending.items()):
            if _query(live, expr):
                del pending[key]
        return not pending

    deadline = time.monotonic() + 90
    while not all_answered():
        if time.monotonic() > deadline or live.stockade.poll() is not None:
            log = (live.workdir / "prometheus.log").read_text(errors="replace")[-1500:]
            pytest.fail("no data for:\n" + "\n".join(pending) + "\n" + log)
        time.sleep(0.5)
    assert float(_query(live, 'up{job="stockade"}')[0]["value"][1]) == 1
