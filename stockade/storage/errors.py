"""The storage error tree.

StorageError
 ├── BlobNotFoundError       the blob is not (or no longer) stored
 ├── DigestMismatchError     the bytes are not what the publisher said
 ├── BlobTooLargeError       the bytes exceed the configured limit
 ├── StorageFullError        the disk is full; nothing was stored
 └── ReadOnlyStorageError    storage is served read-only; nothing new is stored
"""

from __future__ import annotations


class StorageError(Exception):
    """Something went wrong with bytes at rest."""

    def diagnostics(self) -> str:
        """The sentence shown to a user or operator."""
        return str(self)


class BlobNotFoundError(StorageError):
    """No blob with that digest is stored."""


class DigestMismatchError(StorageError):
    """The received bytes do not match the expected digest; nothing was stored."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class BlobTooLargeError(StorageError):
    """The artifact is larger than the configured limit; nothing was stored."""


class StorageFullError(StorageError):
    """The disk ran out of space while writing; nothing was stored."""


class ReadOnlyStorageError(StorageError):
    """Storage is served read-only (it cannot be written): nothing new is stored."""
