"""Per-request counts kept in a tally: exact at any read, written soon without one."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from stockade.proxy.metrics import _BUCKETS, Metrics


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value
            for family in registry.collect() if family.name == name
            for s in family.samples if not s.name.endswith("_created")}


async def test_a_read_of_the_registry_sees_every_count_at_once() -> None:
    metrics = Metrics()
    child = metrics.requests.labels("pypi", "artifact", "200")
    for _ in range(5):
        metrics.tally.inc(child)
    metrics.tally.inc(child, 2)
    assert child._value.get() == 0  # kept, not yet written
    assert metrics.registry.get_sample_value(
        "stockade_requests_total",
        {"ecosystem": "pypi", "kind": "artifact", "status": "200"}) == 7


async def test_observations_land_in_the_buckets_observe_puts_them_in() -> None:
    metrics = Metrics()
    reference = CollectorRegistry()
    direct = Histogram("stockade_request_duration_seconds", "", ["ecosystem", "kind"],
                       buckets=_BUCKETS, registry=reference).labels("npm", "tarball")
    child = metrics.request_duration.labels("npm", "tarball")
    # on a bound, between bounds, past the last, and zero
    for amount in (0.0, 0.001, 0.0011, 0.003, 0.1, 0.75, 30.0, 61.0, 0.0025):
        metrics.tally.observe(child, amount)
        direct.observe(amount)
    tallied = _samples(metrics.registry, "stockade_request_duration_seconds")
    assert tallied == _samples(reference, "stockade_request_duration_seconds")
    assert tallied["stockade_request_duration_seconds_count", ""] == 9


async def test_counts_are_written_within_the_interval_without_a_read() -> None:
    metrics = Metrics()
    child = metrics.bytes_served.labels("maven", "cache")
    metrics.tally.inc(child, 100)
    metrics.tally.inc(child, 23)
    deadline = time.monotonic() + 10
    for _ in range(1000):  # polled, at most ten seconds
        if child._value.get() == 123 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert child._value.get() == 123


def test_without_a_loop_a_count_is_written_at_once() -> None:
    metrics = Metrics()
    child = metrics.cache_requests.labels("npm", "hit")
    metrics.tally.inc(child)
    assert child._value.get() == 1
