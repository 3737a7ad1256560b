"""The platform team's side of signed bundles: a static TUF repository.

Owns key files, creating the repository's root and publishing a bundle into it
with python-tuf's Metadata API. The repository is a folder any static host can
serve (``metadata/`` and ``targets/``), with consistent snapshots: every
version of snapshot, targets and each bundle keeps its own file name, so a
reader never sees half a publication; ``timestamp.json`` is written last.

Keys are PEM files (PKCS#8 private keys; a public key alone is enough to name a
role's key at ``init``). The root key signs only at ``init`` (and a future
rotation) and stays offline: ``publish`` needs the targets, snapshot and
timestamp keys, and refuses to write metadata that would fall below a role's
threshold. Pulling on a replica is ``stockade.proxy.bundlepull``'s job.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

TARGET = "bundle.tar.gz"
ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
DEFAULT_EXPIRY = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=90),
    Snapshot.type: timedelta(days=7),
    # Short: a replica cut off from fresh timestamps (a freeze) notices within a day.
    Timestamp.type: timedelta(days=1),
}
_SERIALIZER = JSONSerializer(compact=False)
T = TypeVar("T", bound=Signed)


class RepositoryError(ValueError):
    """The repository or a key file cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Published:
    """What one publication wrote."""

    version: int  # the targets role's version: the bundle's version
    sha256: str
    length: int


def generate_key(path: Path) -> str:
    """Write a new Ed25519 private key to ``path`` (mode 0600); its key id.

    Raises:
        RepositoryError: ``path`` exists.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise RepositoryError(f"{path}: exists; not overwriting a key") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return str(SSlibKey.from_crypto(key.public_key()).keyid)


def load_signer(path: Path) -> CryptoSigner:
    """The signer of the PEM private key at ``path``.

    Raises:
        RepositoryError: unreadable, or not an unencrypted private key.
    """
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return CryptoSigner(private)
    except (OSError, ValueError, TypeError) as exc:
        raise RepositoryError(f"{path}: not a readable unencrypted private key: {exc}") from exc


def load_public(path: Path) -> SSlibKey:
    """The public key of the PEM file at ``path`` (a public or a private key).

    Raises:
        RepositoryError: neither.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return SSlibKey.from_crypto(serialization.load_pem_public_key(data))
    except (ValueError, TypeError):
        pass
    return load_signer(path).public_key


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _sign(meta: Metadata[Any], root: Root, role: str, signers: Sequence[CryptoSigner]
          ) -> bytes:
    """Sign ``meta`` with ``signers``; its bytes once it meets its threshold."""
    allowed = set(root.roles[role].keyids)
    meta.signatures.clear()
    for signer in signers:
        if signer.public_key.keyid not in allowed:
            raise RepositoryError(
                f"key {signer.public_key.keyid[:12]} is not a {role} key of this repository")
        meta.sign(signer, append=True)
    try:
        root.verify_delegate(role, meta.signed_bytes, meta.signatures)
    except UnsignedMetadataError as exc:
        need = root.roles[role].threshold
        raise RepositoryError(f"{role}: {len(meta.signatures)} signature(s), the threshold is "
                              f"{need}; give more {role} keys") from exc
    return meta.to_bytes(_SERIALIZER)


def init_repository(
    repo: Path, *, root_signers: Sequence[CryptoSigner], keys: dict[str, Sequence[SSlibKey]],
    thresholds: dict[str, int], expires: timedelta = DEFAULT_EXPIRY[Root.type],
) -> None:
    """Create ``repo`` with root version 1 (the file replicas are given as
    ``policy.bundle.trusted_root``); the root keys sign it and go back offline.

    Raises:
        RepositoryError: ``repo`` already has a root, a role lacks keys, or the
            root signers fall below the root threshold.
    """
    meta_dir = repo / "metadata"
    if (meta_dir / "1.root.json").exists():
        raise RepositoryError(f"{repo}: already has a root")
    root = Root(expires=_now() + expires, consistent_snapshot=True)
    all_keys = {Root.type: [s.public_key for s in root_signers], **keys}
    for role in ROLES:
        if not all_keys.get(role):
            raise RepositoryError(f"no {role} key given")
        for key in all_keys[role]:
            root.add_key(key, role)
        threshold = thresholds.get(role, 1)
        if not 1 <= threshold <= len(root.roles[role].keyids):
            raise RepositoryError(f"{role} threshold {threshold} needs that many {role} keys")
        root.roles[role].threshold = threshold
    data = _sign(Metadata(root), root, Root.type, root_signers)
    meta_dir.mkdir(parents=True, exist_ok=True)
    (repo / "targets").mkdir(exist_ok=True)
    _write(meta_dir / "1.root.json", data)
    _write(meta_dir / "root.json", data)


def _root(repo: Path) -> Root:
    meta_dir = repo / "metadata"
    version = 1
    while (meta_dir / f"{version + 1}.root.json").exists():
        version += 1
    try:
        return Metadata[Root].from_file(str(meta_dir / f"{version}.root.json")).signed
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"{repo}: no readable root metadata (run bundle init): {exc}"
                              ) from exc


def _current(repo: Path, role: type[T], version: int | None) -> T | None:
    if version is None:
        return None
    name = "timestamp.json" if role is Timestamp else f"{version}.{role.type}.json"
    try:
        signed = Metadata.from_file(str(repo / "metadata" / name)).signed
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"{repo}: unreadable {name}: {exc}") from exc
    if not isinstance(signed, role):
        raise RepositoryError(f"{repo}: {name} is not {role.type} metadata")
    return signed


def _metafile(data: bytes, version: int) -> MetaFile:
    return MetaFile(version=version, length=len(data),
                    hashes={"sha256": hashlib.sha256(data).hexdigest()})


@dataclass(frozen=True, slots=True)
class Signers:
    """The online keys a publication signs with."""

    targets: Sequence[CryptoSigner]
    snapshot: Sequence[CryptoSigner]
    timestamp: Sequence[CryptoSigner]


def publish(repo: Path, bundle: Path, signers: Signers, *, name: str = TARGET,
            expires: dict[str, timedelta] | None = None) -> Published:
    """Sign ``bundle`` into ``repo`` as target ``name``: new targets, snapshot and
    timestamp versions, each file written before the one that names it.

    Raises:
        RepositoryError: no root yet, a key not authorised for its role, or too few.
    """
    life = {**DEFAULT_EXPIRY, **(expires or {})}
    root = _root(repo)
    meta_dir = repo / "metadata"
    timestamp = _current(repo, Timestamp, 1 if (meta_dir / "timestamp.json").exists() else None)
    snapshot = _current(repo, Snapshot, timestamp.snapshot_meta.version if timestamp else None)
    old_targets = _current(repo, Targets,
                           snapshot.meta["targets.json"].version if snapshot else None)
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"{bundle}: cannot read: {exc.strerror}") from exc
    target = TargetFile(length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()},
                        path=name)
    targets = Targets(version=(old_targets.version + 1) if old_targets else 1,
                      expires=_now() + life[Targets.type],
                      targets={**(old_targets.targets if old_targets else {}), name: target})
    targets_bytes = _sign(Metadata(targets), root, Targets.type, signers.targets)
    snap = Snapshot(version=(snapshot.version + 1) if snapshot else 1,
                    expires=_now() + life[Snapshot.type],
                    meta={"targets.json": _metafile(targets_bytes, targets.version)})
    snap_bytes = _sign(Metadata(snap), root, Snapshot.type, signers.snapshot)
    (repo / "targets").mkdir(exist_ok=True)
    _write(repo / "targets" / f"{target.hashes['sha256']}.{name}", data)
    _write(meta_dir / f"{targets.version}.targets.json", targets_bytes)
    _write(meta_dir / f"{snap.version}.snapshot.json", snap_bytes)
    _timestamp(repo, root, snap_bytes, snap.version, signers.timestamp,
               (timestamp.version + 1) if timestamp else 1, life[Timestamp.type])
    return Published(targets.version, target.hashes["sha256"], len(data))


def _timestamp(repo: Path, root: Root, snap_bytes: bytes, snap_version: int,
               signers: Sequence[CryptoSigner], version: int, expires: timedelta) -> None:
    # The snapshot's length and hash, not only its version: a replica then
    # refuses any snapshot but this one (mix-and-match).
    stamp = Timestamp(version=version, expires=_now() + expires,
                      snapshot_meta=_metafile(snap_bytes, snap_version))
    _write(repo / "metadata" / "timestamp.json",
           _sign(Metadata(stamp), root, Timestamp.type, signers))


def refresh_timestamp(repo: Path, signers: Sequence[CryptoSigner], *,
                      expires: timedelta = DEFAULT_EXPIRY[Timestamp.type]) -> int:
    """Sign a new timestamp for the current snapshot (run it more often than the
    timestamp expires); the new timestamp version.

    Raises:
        RepositoryError: nothing published yet, or the keys fall short.
    """
    meta_dir = repo / "metadata"
    if not (meta_dir / "timestamp.json").exists():
        raise RepositoryError(f"{repo}: nothing published yet")
    root = _root(repo)
    timestamp = Metadata[Timestamp].from_file(str(meta_dir / "timestamp.json")).signed
    version = timestamp.snapshot_meta.version
    snap_bytes = (meta_dir / f"{version}.snapshot.json").read_bytes()
    _timestamp(repo, root, snap_bytes, version, signers, timestamp.version + 1, expires)
    return timestamp.version + 1
