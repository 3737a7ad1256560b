"""Liveness, readiness and the metrics endpoint.

``/healthz`` answers while the process serves; ``/readyz`` only while storage
is writable and has at least ``storage.min_free_bytes`` free, so an
orchestrator stops sending traffic to a replica whose disk is gone or full.
The body says which check failed, with the figures. Storage served read-only
(it could not be written at start) is ready, and says so: what it holds is
all it will ever serve, and taking it out of service would serve nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from stockade.proxy.state import Services, services


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


def _free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


async def storage_free_bytes(svc: Services) -> int | None:
    """Free bytes under the storage path (None: it cannot be read), also as the gauge."""
    free = await asyncio.to_thread(_free_bytes, svc.settings.storage.path)
    if free is not None:
        svc.metrics.storage_free_bytes.set(free)
    return free


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: storage accepts writes and has room for them (or is served
    read-only)."""
    svc = services(request)
    if svc.read_only is not None:
        return web.json_response({
            "status": "read-only", "storage_writable": False,
            "storage_read_only": svc.read_only, "policy_revision": svc.gate.revision,
            "reasons": [f"storage cannot be written ({svc.read_only}): cached artifacts "
                        "and metadata are served, anything else answers 503"],
        })
    writable = await svc.store.writable()
    free = await storage_free_bytes(svc)
    minimum = svc.settings.storage.min_free_bytes
    room = free is not None and free >= minimum
    body: dict[str, Any] = {
        "storage_writable": writable, "storage_free_bytes": free,
        "storage_min_free_bytes": minimum, "policy_revision": svc.gate.revision,
    }
    reasons = []
    if not writable:
        reasons.append("storage is not writable")
    if not room:
        reasons.append(f"storage has {free} bytes free, below storage.min_free_bytes "
                       f"({minimum})" if free is not None else "storage cannot be read")
    ready = not reasons
    body = {"status": "ready" if ready else "not ready", **body}
    if reasons:
        body["reasons"] = reasons
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this app's registry."""
    svc = services(request)
    svc.metrics.storage_bytes.set(svc.store.total_bytes)
    await storage_free_bytes(svc)
    await svc.metrics.settled()
    payload = svc.metrics.exposition()
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Register the operational routes."""
    app.router.add_get("/healthz", healthz, name="ops:healthz")
    app.router.add_get("/readyz", readyz, name="ops:readyz")
    app.router.add_get("/metrics", metrics, name="ops:metrics")
