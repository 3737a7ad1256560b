"""Digest values and the incremental hasher used while bytes stream.

Owns naming digests (``sha256:<hex>``), parsing the forms registries publish
(hex, npm SRI ``sha512-<base64>``) and hashing several algorithms in one pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

ALGORITHMS = ("md5", "sha1", "sha256", "sha512", "blake2b_256")
_HEX_LEN = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "blake2b_256": 64}
_HEX = re.compile(r"^[0-9a-f]+$")


class DigestError(ValueError):
    """A digest string is malformed or names an unknown algorithm."""


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _new(algorithm: str) -> _Hasher:
    if algorithm == "blake2b_256":
        return hashlib.blake2b(digest_size=32)
    # md5/sha1 identify artifacts as registries publish them; not for security.
    return hashlib.new(algorithm, usedforsecurity=algorithm not in ("md5", "sha1"))


@dataclass(frozen=True, slots=True)
class Digest:
    """One algorithm and its lower-case hex value."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm not in _HEX_LEN:
            raise DigestError(f"unknown digest algorithm {self.algorithm!r}")
        if len(self.hex) != _HEX_LEN[self.algorithm] or not _HEX.match(self.hex):
            raise DigestError(f"malformed {self.algorithm} digest {self.hex!r}")

    @classmethod
    def parse(cls, algorithm: str, value: str) -> Digest:
        """Build from a hex string, accepting upper case.

        Raises:
            DigestError: the value is not a digest of that algorithm.
        """
        return cls(algorithm.lower().replace("-", "_"), value.strip().lower())

    @classmethod
    def from_sri(cls, sri: str) -> Digest:
        """Parse one Subresource Integrity token such as ``sha512-<base64>``.

        Raises:
            DigestError: the token is not ``<alg>-<base64>`` of a known algorithm.
        """
        alg, sep, b64 = sri.strip().partition("-")
        if not sep or alg not in ("sha1", "sha256", "sha512"):
            raise DigestError(f"unsupported integrity value {sri!r}")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DigestError(f"integrity value is not base64: {sri!r}") from exc
        return cls(alg, raw.hex())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class MultiHasher:
    """Feeds every chunk to several hash algorithms at once."""

    __slots__ = ("_hashers", "size")

    def __init__(self, algorithms: Iterable[str] = ("sha256",)) -> None:
        algs = dict.fromkeys(("sha256", *algorithms))  # sha256 always: it names blobs
        self._hashers = {alg: _new(alg) for alg in algs}
        self.size = 0

    def update(self, chunk: bytes) -> None:
        """Add one chunk."""
        for hasher in self._hashers.values():
            hasher.update(chunk)
        self.size += len(chunk)

    def digests(self) -> dict[str, Digest]:
        """The digests of everything fed so far, by algorithm."""
        return {alg: Digest(alg, h.hexdigest()) for alg, h in self._hashers.items()}

    def mismatches(self, expected: Iterable[Digest]) -> list[tuple[Digest, Digest]]:
        """Pairs (expected, actual) that differ; an unknown algorithm is hashed
        only if asked for at construction, so it is reported as a mismatch."""
        got = self.digests()
        bad = []
        for want in expected:
            actual = got.get(want.algorithm)
            if actual is None or actual.hex != want.hex:
                bad.append((want, actual or Digest(want.algorithm, "0" * len(want.hex))))
        return bad
