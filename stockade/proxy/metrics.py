"""Prometheus metrics, with the contract's names, in a per-app registry.

Owns the metric objects and their labels, and the multiprocess mode several
worker processes share: each writes its values into files in one folder per run,
and a scrape of any worker sums (or, for gauges, combines as each says) every
worker's files. Nothing here decides or fetches; other modules increment what
they observe.

A request's own counts (``Tally``) are kept in plain numbers and written to their
metrics together: at any read of the registry in this process (a scrape, a test's
``get_sample_value``) and at most ``FLUSH_S`` after they were counted; a scrape
where workers share a folder waits that long first, so each worker's requests
answered before it are in it. Writing them one by one cost a warm request about a
tenth of its time (each a lock and a write into the shared file).
"""

from __future__ import annotations

import asyncio
import os
from asyncio import _get_running_loop
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# How long a count may wait in a ``Tally`` before it reaches its metric (seconds).
FLUSH_S = 0.02


class Tally:
    """Counts of counter and histogram children kept in plain numbers until
    ``flush`` writes them (see the module docstring). Registered in a registry as a
    collector yielding nothing, first: any read of the registry flushes it. Counted
    on the event loop's thread (the request path's counts); where no loop runs, a
    count is written at once."""

    def __init__(self, interval_s: float = FLUSH_S) -> None:
        self.interval_s = interval_s
        self._counts: dict[Any, float] = {}  # counter child -> amount
        # histogram child -> [observations per bucket..., sum]
        self._observed: dict[Any, list[float]] = {}
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # its flush to come

    def inc(self, child: Any, amount: float = 1.0) -> None:
        """``child.inc(amount)``, written at the next flush."""
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount
        loop = _get_running_loop()
        if loop is None or loop is not self._timer_loop:
            self._arm(loop)

    def observe(self, child: Any, amount: float) -> None:
        """``child.observe(amount)`` of a histogram child, written at the next flush."""
        pending = self._observed.get(child)
        if pending is None:
            bounds = child._upper_bounds  # as observe() reads them
            pending = self._observed[child] = [0.0] * (len(bounds) + 1)
        # the first bucket whose bound is at least the amount, as observe() finds it
        pending[bisect_left(child._upper_bounds, amount)] += 1
        pending[-1] += amount
        loop = _get_running_loop()
        if loop is None or loop is not self._timer_loop:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if loop is None:  # nothing here would write them later: now
            self.flush()
            return
        # (after a flush, or the loop of the last timer has ended: a timer on this one)
        self._timer_loop = loop
        loop.call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        """Write every count kept to its metric."""
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        self._timer_loop = None
        for child, amount in counts.items():
            child.inc(amount)
        for child, pending in observed.items():
            child._sum.inc(pending[-1])  # as observe() writes them
            for i, count in enumerate(pending[:-1]):
                if count:
                    child._buckets[i].inc(count)

    def collect(self) -> Iterable[Any]:
        """Flush, and yield nothing (a registry's first collector)."""
        self.flush()
        return ()


_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Every stockade metric, registered in one ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tally = Tally()
        r.register(self.tally)  # first: a read of the registry flushes it
        self.requests = Counter(
            "stockade_requests_total", "Client requests answered.",
            ["ecosystem", "kind", "status"], registry=r,
        )
        self.request_duration = Histogram(
            "stockade_request_duration_seconds", "Time to answer a client request.",
            ["ecosystem", "kind"], buckets=_BUCKETS, registry=r,
        )
        self.cache_requests = Counter(
            "stockade_cache_requests_total", "Cache look-ups by result (hit, miss, stale).",
            ["ecosystem", "result"], registry=r,
        )
        self.upstream_requests = Counter(
            "stockade_upstream_requests_total", "Requests sent to upstreams, by status.",
            ["upstream", "status"], registry=r,
        )
        self.upstream_duration = Histogram(
            "stockade_upstream_duration_seconds", "Time until an upstream answered.",
            ["upstream"], buckets=_BUCKETS, registry=r,
        )
        self.policy_decisions = Counter(
            "stockade_policy_decisions_total",
            "Policy decisions, by rule and outcome; mode audit: a refusal recorded and let "
            "through. Versions hidden from metadata count once per document version.",
            ["ecosystem", "rule", "decision", "mode"], registry=r,
        )
        self.policy_reloads = Counter(
            "stockade_policy_reloads_total",
            "Policy reloads, by result (applied, rejected: the old policy stayed).",
            ["result"], registry=r,
        )
        self.integrity_failures = Counter(
            "stockade_integrity_failures_total",
            "Artifacts whose bytes did not match the published digest.",
            ["ecosystem", "upstream"], registry=r,
        )
        self.blob_verifications = Counter(
            "stockade_blob_verifications_total",
            "Stored blobs re-hashed, by trigger (read: before serving one; schedule: the "
            "periodic re-hash of larger ones) and result (ok, mismatch: removed).",
            ["trigger", "result"], registry=r,
        )
        self.bytes_served = Counter(
            "stockade_bytes_served_total", "Artifact bytes sent to clients, by source.",
            ["ecosystem", "source"], registry=r,
        )
        self.decision_log_pending = Gauge(
            "stockade_decision_log_pending_records",
            "Decision records held because writing the decision log failed.", registry=r,
            multiprocess_mode="livesum",
        )
        self.decision_log_lost = Counter(
            "stockade_decision_log_lost_records",
            "Decision records never written: too many waited for a failing disk.",
            registry=r,
        )
        self.decision_log_records = Gauge(
            "stockade_decision_log_records",
            "Records in the decision log up to its anchored head; a drop means it was cut.",
            registry=r, multiprocess_mode="livemax",
        )
        self.provenance = Counter(
            "stockade_provenance_total",
            "Provenance results of artifact requests, by kind (signature, attestation, pgp) "
            "and result (verified, missing, invalid, unverifiable, mismatch).",
            ["ecosystem", "kind", "result"], registry=r,
        )
        self.bundle_version = Gauge(
            "stockade_bundle_version",
            "Version (the TUF targets version) of the signed policy bundle in force.",
            registry=r,
        )
        self.bundle_age = Gauge(
            "stockade_bundle_age_seconds",
            "Seconds since the bundle repository last confirmed the bundle in force "
            "(before any was applied: since the replica started).", registry=r,
        )
        self.bundle_errors = Counter(
            "stockade_bundle_errors_total",
            "Bundle pulls that put nothing new in force, by reason (rollback, expired, "
            "mix_and_match, target_hash, signature, unreachable, invalid_bundle, ...).",
            ["reason"], registry=r,
        )
        self.osv_syncs = Counter(
            "stockade_osv_syncs_total",
            "OSV export syncs, by ecosystem and result (updated, unchanged, failed).",
            ["ecosystem", "result"], registry=r,
        )
        self.osv_age = Gauge(
            "stockade_osv_age_seconds",
            "Age of the OSV data in force: seconds since its newest record was modified "
            "(what intel.osv_max_age judges).", registry=r,
        )
        self.served_dropped = Counter(
            "stockade_served_records_dropped_total",
            "Served-artifact records dropped: too many waited for a failing disk.",
            registry=r,
        )
        self.reevaluations = Counter(
            "stockade_reevaluations_total",
            "Passes re-deciding served artifacts after a policy or intel change, by result.",
            ["result"], registry=r,
        )
        self.newly_refused = Counter(
            "stockade_newly_refused_total",
            "Served artifacts a policy or intel change newly refuses, by rule.",
            ["ecosystem", "rule"], registry=r,
        )
        self.notifications = Counter(
            "stockade_notifications_total",
            "Webhook notifications by result (delivered, retried, failed, dropped).",
            ["result"], registry=r,
        )
        # Every known reason and result shown from the start, at 0, so an alert on
        # their increase has a series to read before the first failure.
        for reason in ("rollback", "expired", "mix_and_match", "target_hash", "signature",
                       "unreachable", "missing_target", "invalid_bundle", "repository",
                       "trusted_root"):
            self.bundle_errors.labels(reason)
        for result in ("delivered", "retried", "failed", "dropped"):
            self.notifications.labels(result)
        self.storage_bytes = Gauge(
            "stockade_storage_bytes", "Bytes of artifact blobs in storage.", registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.storage_free_bytes = Gauge(
            "stockade_storage_free_bytes",
            "Bytes free on the file system under storage.path (readiness needs "
            "storage.min_free_bytes).", registry=r, multiprocess_mode="livemostrecent",
        )
        self.auth_refusals = Counter(
            "stockade_auth_refusals_total",
            "Requests refused by access control, by route group and reason (missing: "
            "no credential where one is required; invalid: unknown, revoked or malformed; "
            "role: the token lacks the role).", ["group", "reason"], registry=r,
        )
        self.client_connections_closed = Counter(
            "stockade_client_connections_closed_total",
            "Client connections closed by a limit (header_timeout, send_timeout, "
            "per_client_limit).", ["reason"], registry=r,
        )

    async def settled(self) -> None:
        """Wait until the counts of requests answered before now, in every worker
        sharing this one's metrics folder, are written: each worker writes its own at
        most ``FLUSH_S`` after counting them (its loop not held meanwhile)."""
        if multiprocess_folder() is not None:
            await asyncio.sleep(2 * self.tally.interval_s)

    def exposition(self) -> bytes:
        """The text a scrape gets: every worker's values where workers share a
        metrics folder, else this registry's (call ``settled`` before, where they
        share one)."""
        folder = multiprocess_folder()
        if folder is None:
            return generate_latest(self.registry)
        self.tally.flush()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            merged, path=str(folder))
        return generate_latest(merged)


_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name for the folder


def multiprocess_folder() -> Path | None:
    """The folder this process's metrics are shared through, if it is a worker."""
    return _folder


_folder: Path | None = None


def share_metrics(folder: Path) -> None:
    """Make every metric created from now on in this process write its values
    into ``folder``, for a scrape of any worker to combine (call once, in a
    worker, before the application is built)."""
    global _folder
    os.environ[_ENV] = str(folder)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _folder = folder


def worker_gone(folder: Path, pid: int) -> None:
    """Drop a dead worker's gauges that only count while it lives (its counters
    stay in the sums)."""
    multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
