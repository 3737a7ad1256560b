"""A PyPI project's summary and repository, fetched only for names that look alike.

Owns the one extra fetch the typosquat rule's facts need on PyPI: the simple page
has no summary or project URLs, the JSON API does. It is asked only where the
policy says the name loosely resembles a protected one (``resembles``), through
the metadata cache, and its facts are added to every version's once per pair of
documents. A failed fetch leaves them unknown: the policy decides as it does
with facts missing.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from stockade.policy.model import Ecosystem, Facts
from stockade.proxy.admission import ITEM_BYTES
from stockade.proxy.ecosystems import project_facts
from stockade.proxy.ecosystems.base import Documents, json_object
from stockade.proxy.errors import ProxyError
from stockade.proxy.metadocs import CachedDoc
from stockade.proxy.upstream import Upstream

logger = logging.getLogger(__name__)
ECO = Ecosystem.PYPI


def _resembles(engine: Any, name: str) -> bool:
    return any(callable(check := getattr(rule, "resembles", None)) and check(ECO, name)
               for rule in getattr(engine, "rules", ()))


async def summarized(adm: Documents, upstream: Upstream, name: str, json_url: str,
                     page: CachedDoc, facts: dict[str, Facts]) -> dict[str, Facts]:
    """``facts`` with the project's summary and repository where ``name`` loosely
    resembles a protected name; ``facts`` itself otherwise."""
    if upstream.internal or not facts or not _resembles(
            getattr(getattr(adm, "gate", None), "engine", None), name):
        return facts
    try:
        doc = await adm.document(ECO, upstream, json_url, accept="application/json")
        data = json_object(doc.body, upstream.name, name)
    except ProxyError as exc:
        logger.info("no summary for %s from upstream %s: %s", name, upstream.name, exc)
        return facts
    summary, repository = project_facts.pypi_json(data)

    async def add() -> dict[str, Facts]:
        return {v: _with(f, summary, repository) for v, f in facts.items()}

    kind = f"pypi-summary|{page.key}|{page.version}"
    return await adm.parsed(doc, kind, add, lambda every: ITEM_BYTES * len(every))


def _with(facts: Facts, summary: str | None, repository: str | None) -> Facts:
    if facts.project is None:
        return facts
    return dataclasses.replace(facts, project=dataclasses.replace(
        facts.project, summary=summary, repository=repository))


