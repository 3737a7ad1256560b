"""A Maven project's facts: what ``maven-metadata.xml`` says, and when it began.

Owns the project facts the typosquat rule decides a Maven look-alike on: the
versions ``maven-metadata.xml`` lists (its releases), the groupId (its owner: the
namespace Maven Central verified) and its first release, which Maven's metadata
does not date: the ``Last-Modified`` of the oldest listed version's POM checksum
file (Central writes it when the version is published), one more fetch through the
metadata cache, asked only where the policy says the name loosely resembles a
protected one (``resembles``). A failed fetch leaves the age unknown: the policy's
``on_missing`` decides. Stockade's own first sight is no help here: the first
listing of a package is taken on trust as old (``firstseen``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from stockade.policy.model import Ecosystem, ProjectFacts
from stockade.policy.times import http_date
from stockade.proxy.ecosystems import project_facts
from stockade.proxy.ecosystems.base import Documents
from stockade.proxy.errors import ProxyError
from stockade.proxy.upstream import Upstream

logger = logging.getLogger(__name__)
ECO = Ecosystem.MAVEN


def _resembles(engine: Any, name: str) -> bool:
    return any(callable(check := getattr(rule, "resembles", None)) and check(ECO, name)
               for rule in getattr(engine, "rules", ()))


async def project(adm: Documents, upstreams: Sequence[Upstream], group: str, artifact: str,
                  versions: Sequence[str]) -> ProjectFacts:
    """The facts of ``group:artifact`` listing ``versions`` (oldest first, as
    ``maven-metadata.xml`` lists them)."""
    first = None
    name = f"{group}:{artifact}"
    if versions and _resembles(getattr(getattr(adm, "gate", None), "engine", None), name):
        oldest = versions[0]
        path = f"{group.replace('.', '/')}/{artifact}/{oldest}/{artifact}-{oldest}.pom.sha1"
        for upstream in upstreams:
            if upstream.internal:
                continue
            try:
                doc = await adm.document(ECO, upstream, upstream.url.rstrip("/") + "/" + path,
                                         accept="text/plain")
            except ProxyError as exc:
                logger.info("no first release of %s from upstream %s: %s", name,
                            upstream.name, exc)
                continue
            first = http_date(doc.last_modified)
            if first is not None:
                break
    return project_facts.maven(group, len(versions), first)
