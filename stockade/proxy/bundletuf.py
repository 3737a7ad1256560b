"""The python-tuf parts of pulling a policy bundle, imported only when one is pulled.

Owns the ``file://`` fetcher and the reason label of a failed pull. python-tuf's key
library loads every cloud signer it knows (boto3 among them) at import: about half
a second that a proxy without a bundle need not spend at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

__all__ = ["FileFetcher", "Metadata", "Updater", "UpdaterConfig", "classify", "tuf_errors"]


class FileFetcher(FetcherInterface):
    """``file://`` repositories: a copy on removable media in an air gap."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = Path(unquote(urlsplit(url).path))
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise tuf_errors.DownloadHTTPError(f"{path}: not found", 404) from exc
        except OSError as exc:
            raise tuf_errors.DownloadError(f"{path}: {exc.strerror}") from exc
        with handle:
            while chunk := handle.read(64 * 1024):
                yield chunk


def classify(exc: BaseException, *, phase: str) -> str:
    """The ``reason`` label of a failed pull (``phase``: metadata or target)."""
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return "expired"
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return "signature"
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        # "Expected snapshot version 3, got 2": a snapshot or targets file that is
        # not the one its parent names; otherwise a version that went down.
        return "mix_and_match" if str(exc).startswith("Expected") else "rollback"
    if isinstance(exc, (tuf_errors.LengthOrHashMismatchError,
                        tuf_errors.DownloadLengthMismatchError)):
        return "target_hash" if phase == "target" else "mix_and_match"
    if isinstance(exc, tuf_errors.DownloadError):
        return "unreachable"
    if isinstance(exc, tuf_errors.RepositoryError):
        return "repository"
    return "invalid_bundle"
