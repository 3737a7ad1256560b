"""The URL table: which module answers which path. Nothing else."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from stockade.policy.model import Ecosystem
from stockade.proxy import admin, adminactions, health
from stockade.proxy.ecosystems import maven, npm, pypi
from stockade.proxy.ecosystems.base import EcosystemModule

ECOSYSTEMS: Mapping[Ecosystem, EcosystemModule] = {
    Ecosystem.PYPI: pypi, Ecosystem.MAVEN: maven, Ecosystem.NPM: npm,
}


def setup(app: web.Application) -> None:
    """Register every route of stockade on ``app``."""
    health.setup(app)
    admin.setup(app)
    adminactions.setup(app)
    for module in ECOSYSTEMS.values():
        module.setup(app)
