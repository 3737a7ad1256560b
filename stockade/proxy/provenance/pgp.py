"""Maven ``.asc``: detached OpenPGP signatures checked against the keys policy names.

Owns reading armored OpenPGP certificates (the files ``rules.provenance.pgp_keys``
lists for a groupId pattern) into a keyring, and checking one artifact's detached
signature against it, with Sequoia (``pysequoia``) and its standard policy (which
refuses SHA-1 and other broken algorithms, and keys expired or revoked when they
signed). Synchronous and free of I/O: bytes in, a ``ProvenanceResult`` out.

Results: ``verified``; ``missing`` (no ``.asc``); ``mismatch`` (signed by a key the
keyring does not hold: someone else signed it); ``invalid`` (not a signature, or
one by a listed key that does not verify over these bytes).

``pysequoia`` is imported on the first key file or signature read, not with this
module: only Maven signature checks use it, and its library costs a serving process
some 3 MiB that a proxy with no ``pgp_keys`` would hold for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stockade.policy.model import ProvenanceKind, ProvenanceResult, ProvenanceStatus

if TYPE_CHECKING:
    import pysequoia

S = ProvenanceStatus


class PgpKeyError(ValueError):
    """A key file cannot be used; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class PgpKeyring:
    """Certificates allowed to sign, with every (sub)key's fingerprint and key id."""

    certs: tuple[pysequoia.Cert, ...]
    ids: frozenset[str]  # lower-case hex: fingerprints and 16-digit key ids

    def holds(self, issuer: str | None) -> bool:
        return issuer is not None and issuer.lower() in self.ids


def _first_line(exc: BaseException) -> str:
    # pysequoia's messages may carry a Rust backtrace after the first line
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_keyring(armored: Iterable[bytes]) -> PgpKeyring:
    """A keyring of every certificate in ``armored`` (files' bytes, armored or binary).

    Raises:
        PgpKeyError: a file holds no certificate, or one that cannot be read.
    """
    import pysequoia  # on first use: see the module docstring

    certs: list[pysequoia.Cert] = []
    ids: set[str] = set()
    for index, data in enumerate(armored):
        try:
            found = pysequoia.Cert.split_bytes(data)
        except (RuntimeError, ValueError) as exc:
            raise PgpKeyError(f"key file {index + 1} is not an OpenPGP certificate: "
                              f"{_first_line(exc)}") from exc
        if not found:
            raise PgpKeyError(f"key file {index + 1} holds no OpenPGP certificate")
        for cert in found:
            certs.append(cert)
            ids |= _key_ids(cert)
    return PgpKeyring(tuple(certs), frozenset(ids))


def _key_ids(cert: pysequoia.Cert) -> set[str]:
    """Fingerprints and key ids of the primary key and every subkey."""
    from pysequoia.packet import PacketPile  # on first use: see the module docstring

    ids = {cert.fingerprint.lower()}
    for packet in PacketPile.from_bytes(bytes(cert)):
        fingerprint, key_id = packet.fingerprint, packet.key_id
        if fingerprint:
            ids.add(fingerprint.lower())
        if key_id:
            ids.add(key_id.lower())
    return ids


def verify_detached(data: bytes, signature: bytes | None,
                    keyring: PgpKeyring) -> ProvenanceResult:
    """Check ``signature`` (an ``.asc``) over ``data`` against ``keyring``."""
    if signature is None:
        return _result(S.MISSING, "no OpenPGP signature (.asc)")
    import pysequoia  # on first use: see the module docstring

    try:
        sig = pysequoia.Sig.from_bytes(signature)
    except (RuntimeError, ValueError) as exc:
        return _result(S.INVALID, f"the .asc is not an OpenPGP signature ({_first_line(exc)})")
    issuer = sig.issuer_fingerprint or sig.issuer_key_id
    if issuer is not None and not keyring.holds(issuer):
        return _result(S.MISMATCH, f"signed by key {issuer.upper()}, which is not one of "
                       f"the {len(keyring.certs)} keys allowed")
    try:
        verified = pysequoia.verify(bytes=data, store=lambda _ids: list(keyring.certs),
                                    signature=sig)
    except (RuntimeError, ValueError) as exc:
        return _result(S.INVALID, f"the signature by key {(issuer or '?').upper()} does not "
                       f"verify ({_first_line(exc)})")
    if not verified.valid_sigs:
        return _result(S.INVALID, "no valid signature by an allowed key")
    signer = verified.valid_sigs[0]
    return _result(S.VERIFIED, f"signed by key {str(signer.signing_key).upper()} of "
                   f"{str(signer.certificate).upper()}")


def _result(status: ProvenanceStatus, detail: str) -> ProvenanceResult:
    return ProvenanceResult(ProvenanceKind.PGP, status, None, detail)
