"""The URL table: which module answers which path. Nothing else."""

from __future__ import annotations

from aiohttp import web

from stockade.proxy import admin, health
from stockade.proxy.ecosystems import maven, npm, pypi


def setup(app: web.Application) -> None:
    """Register every route of stockade on ``app``."""
    health.setup(app)
    admin.setup(app)
    pypi.setup(app)
    maven.setup(app)
    npm.setup(app)
