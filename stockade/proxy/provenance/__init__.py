"""Provenance verifiers: npm registry signatures, sigstore attestations, OpenPGP.

Each module is synchronous and does no I/O: it takes bytes or parsed JSON already
fetched and returns a ``ProvenanceResult`` (a value policy decides on). Verifying is
CPU-bound; callers run it off the event loop (``asyncio.to_thread``), at most once per
artifact digest, and keep the result with the blob's record.

What a result means, and the refusals built on it, belong to
``stockade.policy.rules.provenance``.
"""

from stockade.policy.model import (
    BuildIdentity,
    ProvenanceKind,
    ProvenanceResult,
    ProvenanceStatus,
    Publisher,
)

__all__ = ["BuildIdentity", "ProvenanceKind", "ProvenanceResult", "ProvenanceStatus",
           "Publisher"]
