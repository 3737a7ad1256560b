"""Prometheus metrics, with the contract's names, in a per-app registry.

Owns the metric objects and their labels. Nothing here decides or fetches;
other modules increment what they observe.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Every stockade metric, registered in one ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        )
        self.decision_log_lost = Counter(
            "stockade_decision_log_lost_records",
            "Decision records never written: too many waited for a failing disk.",
            registry=r,
        )
        self.decision_log_records = Gauge(
            "stockade_decision_log_records",
            "Records in the decision log up to its anchored head; a drop means it was cut.",
            registry=r,
        )
        self.provenance = Counter(
            "stockade_provenance_total",
            "Provenance results of artifact requests, by kind (signature, attestation, pgp) "
            "and result (verified, missing, invalid, unverifiable, mismatch).",
            ["ecosystem", "kind", "result"], registry=r,
        )
        self.storage_bytes = Gauge(
            "stockade_storage_bytes", "Bytes of artifact blobs in storage.", registry=r,
        )
        self.storage_free_bytes = Gauge(
            "stockade_storage_free_bytes",
            "Bytes free on the file system under storage.path (readiness needs "
            "storage.min_free_bytes).", registry=r,
        )
        self.client_connections_closed = Counter(
            "stockade_client_connections_closed_total",
            "Client connections closed by a limit (header_timeout, send_timeout, "
            "per_client_limit).", ["reason"], registry=r,
        )
