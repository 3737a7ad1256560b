"""Maven ``.asc`` signatures for an artifact request, where the policy names keys.

Owns gathering the ``pgp`` result for one artifact or POM whose groupId the
policy's ``pgp_keys`` cover: the artifact is made sure of first (fetched once,
verified against its checksum, stored), then its detached signature
(``<file>.asc``, from the same upstream) is checked over the stored bytes with
the keys the policy lists, once per artifact digest, by the provenance service.
Where the signature does not hold, the stored bytes are never served.
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
from stockade.proxy.provenance.checker import (
    ProvenanceChecker,
    TransientError,
    fingerprint,
    provenance_rule,
)
from stockade.proxy.provenance.pgp import PgpKeyError, load_keyring, verify_detached

if TYPE_CHECKING:
    from pathlib import Path

    from stockade.proxy.admission import Admission
    from stockade.proxy.pipeline import ArtifactPipeline, ArtifactSource

ECO = Ecosystem.MAVEN
_ASC_MAX_BYTES = 64 * 1024
# files that are not signed themselves (signatures, checksums, sigstore bundles)
_UNSIGNED = (".asc", ".md5", ".sha1", ".sha256", ".sha512", ".sigstore.json")


async def gather(adm: Admission, checker: ProvenanceChecker, pipeline: ArtifactPipeline,
                 source: ArtifactSource, ref: PackageRef, facts: Facts) -> Facts:
    """``facts`` with the artifact's ``pgp`` result, where the policy names keys for
    its groupId; unchanged otherwise."""
    rule = provenance_rule(adm.gate.engine)
    keys = rule.pgp_keys_for(ref) if rule is not None else ()
    if rule is None or not keys or source.filename.endswith(_UNSIGNED):
        return facts
    info = await pipeline.ensure(source)

    async def compute() -> ProvenanceResult:
        signature = await _signature(source)
        if signature is None:
            return ProvenanceResult(ProvenanceKind.PGP, ProvenanceStatus.MISSING, None,
                                    "no OpenPGP signature (.asc)")
        data = await pipeline.content(info)
        return await asyncio.to_thread(_verify, data, signature, keys)

    inputs = fingerprint(tuple(rule.trust_id(k) for k in keys))  # changed keys: again
    result = await checker.check(ECO, ProvenanceKind.PGP, "sha256", info.sha256,
                                 inputs=inputs, compute=compute, ref=ref)
    return dataclasses.replace(facts, provenance=(result,))


async def _signature(source: ArtifactSource) -> bytes | None:
    try:
        async with source.upstream.get(source.url + ".asc") as resp:
            return await resp.read(_ASC_MAX_BYTES)
    except UpstreamStatusError as exc:
        if exc.upstream_status in (404, 410):
            return None
        raise TransientError(f"its .asc could not be fetched ({exc})") from exc
    except UpstreamError as exc:
        raise TransientError(f"its .asc could not be fetched ({exc})") from exc


def _verify(data: bytes, signature: bytes, keys: tuple[Path, ...]) -> ProvenanceResult:
    try:
        keyring = load_keyring(path.read_bytes() for path in keys)
    except (PgpKeyError, OSError) as exc:
        raise TransientError(f"the policy's OpenPGP keys cannot be read ({exc})") from exc
    return verify_detached(data, signature, keyring)
