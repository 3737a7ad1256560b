"""Build stockade's Grafana dashboard as plain JSON.

The committed ``stockade.json`` beside this file is this script's output; a
test checks they are equal. After editing, regenerate it:

    python helm/stockade/dashboards/generate.py          # writes stockade.json
    python helm/stockade/dashboards/generate.py --check  # exits 1 if it is stale

Only metrics that stockade exports (``stockade_*``, see
``stockade/proxy/metrics.py``) and Prometheus's ``up`` appear in queries.
Queries use Grafana's ``$job``, ``$instance`` and ``$__rate_interval``
variables; ratios add ``or ... * 0`` so that they show 0, not a gap, before
the first hit or failure creates its series.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("stockade.json")

Panel = dict[str, Any]

# Label matchers every query carries: the replicas chosen in the variables.
SEL = 'job=~"$job", instance=~"$instance"'
# Client traffic: /healthz, /readyz and /metrics are counted as ecosystem "ops".
TRAFFIC = SEL + ', ecosystem!="ops"'
# What stockade records as a failed upstream request (404 is an answer).
UPSTREAM_FAILED = 'status=~"5..|429|error|timeout|tls_error"'
RATE = "[$__rate_interval]"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    """One PromQL query of a panel."""
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref,
            "range": True}


def ratio(numerator: str, denominator: str, by: str) -> str:
    """``numerator / denominator`` summed by ``by``: 0 while no numerator series exists."""
    num = f"sum by ({by}) (rate({numerator}{RATE}))"
    den = f"sum by ({by}) (rate({denominator}{RATE}))"
    return f"({num} or {den} * 0) / {den}"


def quantiles(bucket: str, by: str, legend: str) -> list[dict[str, Any]]:
    """p50, p95 and p99 of a histogram, one target each."""
    out = []
    for ref, q in zip("ABC", ("0.5", "0.95", "0.99"), strict=True):
        expr = f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket}{RATE})))"
        out.append(target(expr, f"{legend} p{q[2:].ljust(2, '0')}", ref))
    return out


def timeseries(title: str, description: str, targets: list[dict[str, Any]], unit: str,
               **custom: Any) -> Panel:
    """A time series panel (position filled in by ``layout``)."""
    return {
        "type": "timeseries", "title": title, "description": description,
        "datasource": DATASOURCE, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"fillOpacity": 10, **custom}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title: str, description: str, expr: str, unit: str,
         thresholds: list[tuple[float | None, str]]) -> Panel:
    """A single-number panel coloured by thresholds."""
    steps = [{"value": value, "color": color} for value, color in thresholds]
    return {
        "type": "stat", "title": title, "description": description,
        "datasource": DATASOURCE, "targets": [target(expr, "", "A")],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute",
                                                                  "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto"},
    }


def overview() -> list[Panel]:
    green, red, amber = "green", "red", "orange"
    return [
        stat("Replicas up", "stockade targets Prometheus scrapes successfully (`up`).",
             f"sum(up{{{SEL}}})", "none", [(None, red), (1, green)]),
        stat("Requests / s", "Client requests answered, all ecosystems.",
             f"sum(rate(stockade_requests_total{{{TRAFFIC}}}{RATE}))", "reqps",
             [(None, green)]),
        stat("Metadata cache hit ratio", "Index pages, packuments and maven-metadata "
             "served from the cache.",
             ratio(f'stockade_cache_requests_total{{{SEL}, result="hit"}}',
                   f"stockade_cache_requests_total{{{SEL}}}", "job"),
             "percentunit", [(None, amber), (0.5, green)]),
        stat("Storage", "Bytes of artifact blobs in storage, all replicas.",
             f"sum(stockade_storage_bytes{{{SEL}}})", "bytes", [(None, green)]),
        stat("Decision records pending", "Records waiting because the decision log cannot "
             "be written (a full or failing volume). Past 10,000 they are dropped.",
             f"sum(stockade_decision_log_pending_records{{{SEL}}})", "none",
             [(None, green), (1, red)]),
    ]


def traffic() -> list[Panel]:
    return [
        timeseries("Requests by ecosystem", "Client requests answered per second.",
                   [target(f"sum by (ecosystem) (rate(stockade_requests_total{{{TRAFFIC}}}"
                           f"{RATE}))", "{{ecosystem}}")], "reqps"),
        timeseries("Responses by status", "403 is a policy refusal; 502 and 504 an "
                   "upstream that failed with nothing cached.",
                   [target(f"sum by (ecosystem, status) (rate(stockade_requests_total"
                           f"{{{TRAFFIC}}}{RATE}))", "{{ecosystem}} {{status}}")], "reqps"),
        timeseries("Request latency by ecosystem", "Time to answer a client request "
                   "(artifacts stream: the time to the last byte).",
                   quantiles(f"stockade_request_duration_seconds_bucket{{{TRAFFIC}}}",
                             "ecosystem", "{{ecosystem}}"), "s"),
        timeseries("Bytes served by source", "Artifact bytes sent to clients, from the "
                   "cache or streamed from an upstream.",
                   [target(f"sum by (ecosystem, source) (rate(stockade_bytes_served_total"
                           f"{{{SEL}}}{RATE}))", "{{ecosystem}} {{source}}")], "Bps"),
    ]


def cache() -> list[Panel]:
    return [
        timeseries("Metadata cache hit ratio by ecosystem",
                   "Hits over all look-ups; stale answers (an upstream down) count as "
                   "misses here.",
                   [target(ratio(f'stockade_cache_requests_total{{{SEL}, result="hit"}}',
                                 f"stockade_cache_requests_total{{{SEL}}}", "ecosystem"),
                           "{{ecosystem}}")], "percentunit"),
        timeseries("Cache look-ups by result", "hit, miss, and stale (served while the "
                   "upstream failed).",
                   [target(f"sum by (ecosystem, result) (rate(stockade_cache_requests_total"
                           f"{{{SEL}}}{RATE}))", "{{ecosystem}} {{result}}")], "ops"),
    ]


def upstreams() -> list[Panel]:
    failed = f"stockade_upstream_requests_total{{{SEL}, {UPSTREAM_FAILED}}}"
    every = f"stockade_upstream_requests_total{{{SEL}}}"
    return [
        timeseries("Upstream failure ratio", "5xx, 429, connection errors, timeouts and "
                   "TLS failures over all requests, per upstream.",
                   [target(ratio(failed, every, "upstream"), "{{upstream}}")],
                   "percentunit"),
        timeseries("Upstream requests by status", "Requests stockade sent to each upstream.",
                   [target(f"sum by (upstream, status) (rate({every}{RATE}))",
                           "{{upstream}} {{status}}")], "reqps"),
        timeseries("Upstream latency", "Time until an upstream answered.",
                   quantiles(f"stockade_upstream_duration_seconds_bucket{{{SEL}}}",
                             "upstream", "{{upstream}}"), "s"),
    ]


def policy() -> list[Panel]:
    return [
        timeseries("Refusals by rule and ecosystem", "Requests refused (blocked or held) "
                   "by policy, per rule.",
                   [target(f"sum by (ecosystem, rule) (rate(stockade_policy_decisions_total"
                           f'{{{SEL}, decision=~"block|hold"}}{RATE}))',
                           "{{ecosystem}} {{rule}}")], "ops"),
        timeseries("Decisions by outcome", "Every policy decision recorded, by outcome.",
                   [target(f"sum by (decision) (rate(stockade_policy_decisions_total"
                           f"{{{SEL}}}{RATE}))", "{{decision}}")], "ops"),
        timeseries("Policy reloads", "applied: a changed policy file is in force; "
                   "rejected: it was invalid and the previous policy stayed.",
                   [target(f"sum by (result) (increase(stockade_policy_reloads_total"
                           f"{{{SEL}}}{RATE}))", "{{result}}")], "short",
                   drawStyle="bars"),
    ]


def integrity_and_storage() -> list[Panel]:
    return [
        timeseries("Integrity failures", "Artifacts whose bytes did not match the digest "
                   "their registry published: refused, nothing stored.",
                   [target(f"sum by (ecosystem, upstream) (increase("
                           f"stockade_integrity_failures_total{{{SEL}}}{RATE}))",
                           "{{ecosystem}} {{upstream}}")], "short", drawStyle="bars"),
        timeseries("Storage by replica", "Bytes of artifact blobs each replica stores.",
                   [target(f"sum by (instance) (stockade_storage_bytes{{{SEL}}})",
                           "{{instance}}")], "bytes"),
        timeseries("Decision log: pending records", "Held because the log cannot be "
                   "written; written in order once the volume takes them again.",
                   [target(f"sum by (instance) (stockade_decision_log_pending_records"
                           f"{{{SEL}}})", "{{instance}}")], "short"),
        timeseries("Decision log: lost records", "Dropped past 10,000 pending: a gap in "
                   "the audit trail (`stockade log verify` shows where).",
                   [target(f"sum by (instance) (increase("
                           f"stockade_decision_log_lost_records_total{{{SEL}}}{RATE}))",
                           "{{instance}}")], "short", drawStyle="bars"),
    ]


def layout(rows: list[tuple[str, list[Panel]]]) -> list[Panel]:
    """Rows of panels: a row of stat panels shares one line, others go two to a line."""
    panels: list[Panel] = []
    y = 0
    for title, members in rows:
        panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        small = all(panel["type"] == "stat" for panel in members)
        per_line, height = (len(members), 4) if small else (2, 8)
        for index, panel in enumerate(members):
            column = index % per_line
            if index and column == 0:
                y += height
            x = 24 * column // per_line
            width = 24 * (column + 1) // per_line - x
            panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
            panels.append(panel)
        y += height
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def variables() -> list[dict[str, Any]]:
    def query(name: str, label: str, expr: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
                "query": {"query": expr, "refId": name}, "definition": expr,
                "refresh": 2, "multi": True, "includeAll": True, "allValue": ".+",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1}

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "refresh": 1},
        query("job", "Job", "label_values(stockade_requests_total, job)"),
        query("instance", "Replica",
              'label_values(stockade_requests_total{job=~"$job"}, instance)'),
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard document."""
    rows = [
        ("Overview", overview()),
        ("Traffic", traffic()),
        ("Cache", cache()),
        ("Upstreams", upstreams()),
        ("Policy", policy()),
        ("Integrity and storage", integrity_and_storage()),
    ]
    return {
        "uid": "stockade",
        "title": "stockade",
        "description": "stockade, the package proxy: traffic, cache, upstreams, policy, "
                       "integrity, storage and the decision log.",
        "tags": ["stockade"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(rows),
    }


def render() -> str:
    """The dashboard as the committed file holds it."""
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed file differs from the output")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            sys.stderr.write(f"{OUTPUT.name} is stale: run {Path(__file__).name}\n")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
