"""PyPI PEP 740 provenance for a file download.

Owns fetching a file's provenance object (the Integrity API's body, at the
``provenance`` URL of the project page, through the metadata cache) and having
the provenance service verify it against the file's published sha256 under the
policy's trusted root, once per digest. The page's ``provenance`` URLs are
rewritten to stockade's own route (``pypi.py``), which serves the same object.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from stockade.policy.model import (
    Ecosystem,
    Facts,
    PackageRef,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
)
from stockade.proxy.errors import UpstreamError, UpstreamStatusError
from stockade.proxy.provenance.attestations import verify_pypi_provenance
from stockade.proxy.provenance.checker import (
    ProvenanceChecker,
    TransientError,
    attestations_wanted,
    fingerprint,
    provenance_rule,
    unverifiable,
)

if TYPE_CHECKING:
    from stockade.proxy.admission import Admission
    from stockade.proxy.ecosystems.pypi_pages import FileEntry
    from stockade.proxy.metadocs import CachedDoc
    from stockade.proxy.upstream import Upstream

ECO = Ecosystem.PYPI
INTEGRITY = "application/vnd.pypi.integrity.v1+json"
_TTL_S = 24 * 3600.0  # a file's provenance does not change once published


async def document(adm: Admission, upstream: Upstream, url: str) -> CachedDoc:
    """The provenance object at ``url`` (an upstream URL), through the metadata cache.

    Raises:
        UpstreamError: it cannot be had (a 404 when the upstream has none).
    """
    return await adm.document(ECO, upstream, url, accept=f"{INTEGRITY}, application/json",
                              ttl_s=_TTL_S)


async def gather(adm: Admission, checker: ProvenanceChecker, upstream: Upstream, name: str,
                 entry: FileEntry, facts: Facts, *, doc_url: str) -> Facts:
    """``facts`` with the file's attestation result, where the policy looks at it."""
    rule = provenance_rule(adm.gate.engine)
    if rule is None or not attestations_wanted(rule, PackageRef(ECO, name, entry.version)):
        return facts
    kind = ProvenanceKind.ATTESTATION
    sha256 = entry.hashes.get("sha256")
    if entry.provenance is None:
        result = ProvenanceResult(kind, ProvenanceStatus.MISSING, None,
                                  "the index publishes no provenance for the file")
    elif not sha256:
        result = unverifiable(kind, "the index publishes no sha256 to compare with")
    elif (url := upstream.resolve(entry.provenance, doc_url)) is None:
        result = unverifiable(kind, f"its provenance URL is outside upstream {upstream.name}")
    else:
        async def compute() -> ProvenanceResult:
            try:
                doc = await document(adm, upstream, url)
            except UpstreamStatusError as exc:
                if exc.upstream_status == 404:
                    return ProvenanceResult(kind, ProvenanceStatus.MISSING, None,
                                            "the index has no provenance object for it")
                raise TransientError(f"its provenance could not be fetched ({exc})") from exc
            except UpstreamError as exc:
                raise TransientError(f"its provenance could not be fetched ({exc})") from exc
            trust = await checker.trust(rule)
            return await asyncio.to_thread(verify_pypi_provenance, doc.body,
                                           filename=entry.filename, sha256=sha256,
                                           trust=trust.trust)

        inputs = fingerprint(entry.filename, rule.trust_id(rule.trusted_root))
        result = await checker.check(ECO, kind, "sha256", sha256, inputs=inputs,
                                     compute=compute, ref=PackageRef(ECO, name, entry.version))
        return dataclasses.replace(facts, provenance=(result,))
    checker.count(ECO, result)
    return dataclasses.replace(facts, provenance=(result,))
