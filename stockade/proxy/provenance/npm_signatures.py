"""npm registry signatures (``dist.signatures``), checked as npm's own client does.

Owns reading a registry's keys document (``/-/npm/v1/keys``, or the same keys in the
shape Sigstore's TUF repository publishes them) and verifying each signature: the key
is found by ``keyid``, must not have expired before the version was published, and
must sign ECDSA P-256 / SHA-256 over ``<name>@<version>:<integrity>``. Synchronous and
free of I/O; fetching and caching the keys is the caller's job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from stockade.policy.model import ProvenanceKind, ProvenanceResult, ProvenanceStatus

if TYPE_CHECKING:  # cryptography is imported with the first keys read, not at start
    from cryptography.hazmat.primitives.asymmetric import ec

# npm judges a version with no publish time as published on this day (pacote's
# MISSING_TIME_CUTOFF): keys that expired after it still count.
MISSING_TIME_CUTOFF = datetime(2015, 1, 1, tzinfo=UTC)


class NpmKeysError(ValueError):
    """A keys document cannot be used; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class RegistryKey:
    """One registry signing key: its id, the public key and when it stops counting."""

    keyid: str
    key: ec.EllipticCurvePublicKey
    expires: datetime | None = None

    def valid_at(self, when: datetime) -> bool:
        """True when a signature made at ``when`` may use this key (npm's rule)."""
        return self.expires is None or when < self.expires


@dataclass(frozen=True, slots=True)
class NpmKeys:
    """A registry's signing keys, by id."""

    keys: tuple[RegistryKey, ...] = ()

    def get(self, keyid: str) -> RegistryKey | None:
        for key in self.keys:
            if key.keyid == keyid:
                return key
        return None


def keyid_of(key: ec.EllipticCurvePublicKey) -> str:
    """``SHA256:`` + unpadded base64 of SHA-256 over the key's OpenSSH wire blob."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    blob = base64.b64decode(key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_time(value: str | None) -> datetime | None:
    """An npm timestamp (``2023-01-25T20:15:43.482Z``) as an aware datetime; None stays None.

    Raises:
        ValueError: the value is not an ISO 8601 time.
    """
    if value is None:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_keys(document: bytes | Mapping[str, Any]) -> NpmKeys:
    """The keys of a ``/-/npm/v1/keys`` document (or of Sigstore's ``keys.json``).

    A key whose ``keyid`` is not the id of its own key material is refused: a
    document that pairs an id with another key is corrupt or forged.

    Raises:
        NpmKeysError: not JSON, no ``keys`` list, or a key that cannot be read.
    """
    if isinstance(document, bytes | bytearray):
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError as exc:
            raise NpmKeysError(f"the npm keys document is not JSON: {exc}") from exc
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise NpmKeysError("the npm keys document has no \"keys\" list")
    return NpmKeys(tuple(_key(entry, i) for i, entry in enumerate(entries)))


def _key(entry: Any, index: int) -> RegistryKey:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    if not isinstance(entry, Mapping):
        raise NpmKeysError(f"npm key {index} is not an object")
    if "publicKey" in entry:  # the TUF target's shape
        public = entry.get("publicKey") or {}
        keyid, material = entry.get("keyId"), public.get("rawBytes")
        expires = (public.get("validFor") or {}).get("end")
    else:
        keyid, material, expires = entry.get("keyid"), entry.get("key"), entry.get("expires")
    if not isinstance(keyid, str) or not isinstance(material, str):
        raise NpmKeysError(f"npm key {index} has no keyid or key")
    try:
        key = load_der_public_key(base64.b64decode(material, validate=True))
        when = parse_time(expires) if isinstance(expires, str) else None
    except (ValueError, binascii.Error) as exc:
        raise NpmKeysError(f"npm key {keyid} cannot be read: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise NpmKeysError(f"npm key {keyid} is not an ECDSA P-256 key")
    if keyid_of(key) != keyid:
        raise NpmKeysError(f"npm key {keyid} does not match its key material "
                           f"(which is {keyid_of(key)})")
    return RegistryKey(keyid, key, when)


def ecdsa_valid(key: ec.EllipticCurvePublicKey, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` (base64 DER) is ``key``'s ECDSA-SHA256 over ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def verify_signatures(
    *, name: str, version: str, integrity: str | None,
    signatures: Sequence[Mapping[str, Any]] | None, keys: NpmKeys,
    published_at: datetime | None,
) -> ProvenanceResult:
    """Check a version's ``dist.signatures`` against the registry's keys.

    ``published_at`` is ``time[version]`` of the full packument. Every signature
    must verify, as npm requires. Results: ``verified``; ``missing`` (no signature,
    or no integrity to sign); ``unverifiable`` (a key id the keys do not list: new
    keys may not have reached a pinned copy yet); ``invalid`` (a key that had expired
    when the version was published, or a signature that does not verify).
    """
    if not signatures:
        return _result(ProvenanceStatus.MISSING, "no npm registry signature"
                       + ("" if keys.keys else " (the registry publishes no keys)"))
    if not integrity:
        return _result(ProvenanceStatus.MISSING, "no integrity value for a signature to cover")
    message = f"{name}@{version}:{integrity}".encode()
    published = published_at or MISSING_TIME_CUTOFF
    checked: list[str] = []
    for signature in _entries(signatures):
        keyid, sig = signature
        key = keys.get(keyid)
        if key is None:
            return _result(ProvenanceStatus.UNVERIFIABLE,
                           f"signed with key {keyid}, which the registry's keys do not list")
        if not key.valid_at(published):
            assert key.expires is not None
            return _result(ProvenanceStatus.INVALID,
                           f"signed with key {keyid}, which expired "
                           f"{key.expires:%Y-%m-%d}, before the version was published "
                           f"{published:%Y-%m-%d}")
        if not ecdsa_valid(key.key, message, sig):
            return _result(ProvenanceStatus.INVALID,
                           f"the registry signature with key {keyid} does not verify")
        checked.append(keyid)
    return _result(ProvenanceStatus.VERIFIED, f"registry signature by {', '.join(checked)}")


def _entries(signatures: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for entry in signatures:
        keyid, sig = entry.get("keyid"), entry.get("sig")
        out.append((keyid if isinstance(keyid, str) else "(none)",
                    sig if isinstance(sig, str) else ""))
    return out


def _result(status: ProvenanceStatus, detail: str) -> ProvenanceResult:
    return ProvenanceResult(ProvenanceKind.SIGNATURE, status, None, detail)
