"""Fixtures of the integration tests that several modules share."""

from tests.integration.outage_support import central_repo, npm_registry, proxy_for

__all__ = ["central_repo", "npm_registry", "proxy_for"]
