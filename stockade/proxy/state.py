"""The services one application holds, under a single ``AppKey``.

Owns nothing but the shape: ``app`` builds them in its cleanup context and
handlers read them with ``services(request)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from stockade.config.model import EcosystemSettings, Settings
from stockade.policy.model import Ecosystem
from stockade.proxy.firstseen import FirstSeen
from stockade.proxy.gate import Gate
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metrics import Metrics
from stockade.proxy.pipeline import ArtifactPipeline
from stockade.proxy.rendered import RenderedCache
from stockade.proxy.upstream import Upstream
from stockade.storage.filesystem import FilesystemBlobStore


@dataclass(slots=True)
class Services:
    """Everything a handler may use; built once per application."""

    settings: Settings
    metrics: Metrics
    store: FilesystemBlobStore
    metacache: MetadataCache
    pipeline: ArtifactPipeline
    upstreams: Mapping[Ecosystem, tuple[Upstream, ...]]
    gate: Gate
    rendered: RenderedCache
    first_seen: FirstSeen

    def ecosystem(self, eco: Ecosystem) -> EcosystemSettings:
        """The settings of one ecosystem."""
        settings: EcosystemSettings = getattr(self.settings, eco.value)
        return settings


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The services of the application serving ``request``."""
    return request.app[SERVICES]
