"""The services one application holds, under a single ``AppKey``.

Owns nothing but the shape: ``app`` builds them in its cleanup context and
handlers read them with ``services(request)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from stockade.config.model import Settings
from stockade.proxy.admission import Admission
from stockade.proxy.bundlepull import BundlePuller
from stockade.proxy.checksum_origins import ChecksumOrigins
from stockade.proxy.gate import Gate
from stockade.proxy.metrics import Metrics
from stockade.proxy.pipeline import ArtifactPipeline
from stockade.proxy.provenance.checker import ProvenanceChecker
from stockade.proxy.reloader import PolicyReloader
from stockade.proxy.rendered import RenderedCache
from stockade.proxy.warmmemo import WarmMemo
from stockade.storage.protocol import BlobStore


@dataclass(slots=True)
class Services:
    """Everything a handler may use; built once per application."""

    settings: Settings
    metrics: Metrics
    store: BlobStore
    admission: Admission
    pipeline: ArtifactPipeline
    rendered: RenderedCache
    provenance: ProvenanceChecker
    reloader: PolicyReloader | None = None  # watches the policy file; set once started
    bundle: BundlePuller | None = None  # policy.bundle's puller, where configured
    # Why storage cannot be written, when it is served read-only; else None.
    read_only: str | None = None
    # Which checksum files each Maven upstream publishes (None: asked every time).
    checksum_origins: ChecksumOrigins | None = None
    # Warm artifact requests remembered briefly (``server.warm_memo_s``; None: off).
    warm: WarmMemo | None = None

    @property
    def gate(self) -> Gate:
        """The policy in force, with its accounting."""
        return self.admission.gate


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The services of the application serving ``request``."""
    return request.app[SERVICES]
