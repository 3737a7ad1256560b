"""Liveness, readiness and the metrics endpoint.

``/healthz`` answers while the process serves; ``/readyz`` only while storage
is writable, so an orchestrator stops sending traffic to a replica whose disk
is gone or full.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stockade.proxy.state import services


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: storage accepts writes."""
    svc = services(request)
    writable = await svc.store.writable()
    body = {"status": "ready" if writable else "not ready", "storage_writable": writable,
            "policy_revision": svc.gate.revision}
    return web.json_response(body, status=200 if writable else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this app's registry."""
    svc = services(request)
    svc.metrics.storage_bytes.set(svc.store.total_bytes)
    payload = generate_latest(svc.metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Register the operational routes."""
    app.router.add_get("/healthz", healthz, name="ops:healthz")
    app.router.add_get("/readyz", readyz, name="ops:readyz")
    app.router.add_get("/metrics", metrics, name="ops:metrics")
